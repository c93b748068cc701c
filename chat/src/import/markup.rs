//! Slack message markup → our plain text with `@user`/`#room` mentions and Markdown links. Pure.
//!
//! Slack escapes only `&`, `<` and `>` in message text and writes everything special inside `<…>`:
//! `<@U123>` (a user), `<#C123|general>` (a channel), `<!here>`/`<!channel>`/`<!everyone>` (group
//! mentions), `<!subteam^S1|@team>`, `<!date^…|fallback>`, and `<https://x|label>` (a link). Because a
//! literal `<` is always escaped, every `<` in the raw text opens markup; the parts between are text
//! that only needs unescaping.

use std::collections::HashMap;

/// What a user or channel id is called on our side.
pub trait Names {
    /// Our username for a Slack user id.
    fn username(&self, slack_user: &str) -> Option<&str>;
    /// Our room name for a Slack channel id.
    fn room(&self, slack_conversation: &str) -> Option<&str>;
}

impl Names for (HashMap<String, String>, HashMap<String, String>) {
    fn username(&self, id: &str) -> Option<&str> {
        self.0.get(id).map(String::as_str)
    }
    fn room(&self, id: &str) -> Option<&str> {
        self.1.get(id).map(String::as_str)
    }
}

/// A converted message text and what it mentions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Converted {
    pub text: String,
    /// Slack user ids mentioned with `<@U…>`, first mention first, no repeats.
    pub users: Vec<String>,
    /// `<!here>`, `<!channel>` or `<!everyone>` used.
    pub group_mention: bool,
}

/// `&amp;`, `&lt;`, `&gt;` (the only entities Slack writes) back to characters; anything else is kept.
pub fn unescape(s: &str) -> String {
    if !s.contains('&') {
        return s.to_owned();
    }
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

/// Converts one message text.
pub fn convert(raw: &str, names: &dyn Names) -> Converted {
    let mut out = Converted::default();
    let mut rest = raw;
    while let Some(open) = rest.find('<') {
        out.text.push_str(&unescape(&rest[..open]));
        let after = &rest[open + 1..];
        let Some(close) = after.find('>') else {
            // An unclosed `<` is not markup Slack writes; keep it as text.
            out.text.push_str(&unescape(&rest[open..]));
            rest = "";
            break;
        };
        convert_token(&after[..close], names, &mut out);
        rest = &after[close + 1..];
    }
    out.text.push_str(&unescape(rest));
    out
}

fn convert_token(token: &str, names: &dyn Names, out: &mut Converted) {
    let (target, label) = match token.split_once('|') {
        Some((t, l)) => (t, Some(unescape(l))),
        None => (token, None),
    };
    if let Some(id) = target.strip_prefix('@') {
        match names.username(id) {
            Some(name) => {
                out.text.push('@');
                out.text.push_str(name);
                if !out.users.iter().any(|u| u == id) {
                    out.users.push(id.to_owned());
                }
            }
            // A user not in users.json: the label Slack stored, or the raw id.
            None => {
                out.text.push('@');
                out.text.push_str(label.as_deref().map(|l| l.trim_start_matches('@')).unwrap_or(id));
            }
        }
    } else if let Some(id) = target.strip_prefix('#') {
        out.text.push('#');
        out.text.push_str(names.room(id).or(label.as_deref()).unwrap_or(id));
    } else if let Some(special) = target.strip_prefix('!') {
        let keyword = special.split('^').next().unwrap_or(special);
        match keyword {
            "here" => {
                out.text.push_str("@here");
                out.group_mention = true;
            }
            "channel" | "everyone" => {
                out.text.push_str("@all");
                out.group_mention = true;
            }
            _ => out.text.push_str(label.as_deref().unwrap_or(keyword)),
        }
    } else {
        let url = unescape(target);
        let shown = url.strip_prefix("mailto:").unwrap_or(&url);
        match label {
            Some(l) if l != url && l != shown => {
                out.text.push('[');
                out.text.push_str(&l);
                out.text.push_str("](");
                out.text.push_str(&url);
                out.text.push(')');
            }
            _ => out.text.push_str(shown),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> (HashMap<String, String>, HashMap<String, String>) {
        (
            [("U1".to_owned(), "alice".to_owned())].into_iter().collect(),
            [("C1".to_owned(), "general".to_owned())].into_iter().collect(),
        )
    }

    #[test]
    fn user_and_channel_references_become_mentions() {
        let c = convert("hi <@U1>, see <#C1|old-name> and <#C9|gone>; <@U1> again", &names());
        assert_eq!(c.text, "hi @alice, see #general and #gone; @alice again");
        assert_eq!(c.users, vec!["U1"]);
        assert!(!c.group_mention);
    }

    #[test]
    fn unknown_users_keep_their_label_or_id() {
        assert_eq!(convert("<@U9|bob> <@U8>", &names()).text, "@bob @U8");
        assert!(convert("<@U9>", &names()).users.is_empty());
    }

    #[test]
    fn links_become_markdown_unless_the_label_is_the_url() {
        let c = convert("<https://x.org/a?b=1&amp;c=2|the docs> <https://y.org> <mailto:a@b.c|a@b.c>", &names());
        assert_eq!(c.text, "[the docs](https://x.org/a?b=1&c=2) https://y.org a@b.c");
    }

    #[test]
    fn group_mentions_and_specials() {
        let c = convert("<!here> <!channel> <!everyone> <!subteam^S1|@devs> <!date^1|Jan 1>", &names());
        assert_eq!(c.text, "@here @all @all @devs Jan 1");
        assert!(c.group_mention);
    }

    #[test]
    fn entities_are_unescaped_and_stray_brackets_kept() {
        assert_eq!(convert("a &lt;b&gt; &amp;amp; c", &names()).text, "a <b> &amp; c");
        assert_eq!(convert("x < y", &names()).text, "x < y");
        assert_eq!(convert("", &names()).text, "");
    }
}
