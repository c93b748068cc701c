//! The store edge of an import: [`resolve`] reads (never writes) what the store already has that the
//! archive could collide with or continue, and [`run`] plans and hands the batch to
//! [`Store::import`]. The archive has been parsed completely before either is called.

use std::collections::HashSet;

use super::plan::{self, name_candidates, sanitize_name, Existing, Plan};
use super::slack::{Archive, ConversationKind};
use super::{ImportError, Summary};
use crate::limits::MAX_NAME_CHARS;
use crate::room::RoomType;
use crate::store::{ImportProgress, Store};

/// Free name candidates looked up per user or room. A third Slack name mapping to the same name (after
/// sanitizing) could pick a name not checked here; the store then refuses it as a conflict (SQLite: the
/// import rolls back) rather than writing a duplicate.
const FREE_CANDIDATES: usize = 2;

/// Looks up, read-only, everything [`plan::plan`] needs to know about the store.
pub async fn resolve(store: &dyn Store, archive: &Archive) -> Result<Existing, ImportError> {
    let mut ex = Existing::default();
    for su in &archive.users {
        if let Some(u) = store.get_user(&plan::user_id(&su.id)).await? {
            ex.usernames.insert(u.username.to_lowercase());
            ex.users.insert(u.id.clone(), u);
            continue;
        }
        if let Some(email) = su.profile.email.as_deref().map(str::trim).filter(|e| !e.is_empty()) {
            if let Some(u) = store.user_by_email(email).await? {
                ex.by_email.insert(email.to_lowercase(), u);
            }
        }
        // Candidates in order until two are free: the plan takes the first free one, or the next when
        // another Slack user of the archive claimed it first.
        let mut free = 0;
        for name in name_candidates(&sanitize_name(&su.name, MAX_NAME_CHARS, &su.id)) {
            match store.user_by_username(&name).await? {
                Some(u) => {
                    ex.usernames.insert(u.username.to_lowercase());
                }
                None => free += 1,
            }
            if free == FREE_CANDIDATES {
                break;
            }
        }
    }
    // DMs continue an existing DM of the same people: read the DMs of every account that already exists.
    let mapped = plan::map_users(archive, &ex, &mut Summary::default());
    let mut seen = HashSet::new();
    for m in mapped.values().filter(|m| !m.new) {
        if !seen.insert(m.user.id.clone()) {
            continue;
        }
        for room in store.rooms_for_user(&m.user.id, None).await? {
            if room.t == RoomType::Direct {
                if let Some(key) = &room.dm_key {
                    ex.dms.insert(key.clone(), room.id.clone());
                }
            }
        }
    }
    for (conv, msgs) in archive.conversations.iter().zip(&archive.messages) {
        if let Some(room) = store.get_room(&plan::room_id(&conv.id)).await? {
            if let Some(n) = &room.name {
                ex.room_names.insert(n.to_lowercase());
            }
            ex.rooms.insert(room.id.clone(), room);
        } else if conv.kind != ConversationKind::Dm {
            let base = sanitize_name(conv.name.as_deref().unwrap_or(&conv.id), MAX_NAME_CHARS, &conv.id);
            let mut free = 0;
            for name in name_candidates(&base) {
                if store.room_by_name(&name).await?.is_some() {
                    ex.room_names.insert(name.to_lowercase());
                } else {
                    free += 1;
                }
                if free == FREE_CANDIDATES {
                    break;
                }
            }
        }
        // Replies whose root is not in this archive may continue a thread imported earlier.
        let here: HashSet<&str> = msgs.iter().map(|m| m.ts.as_str()).collect();
        let mut asked = HashSet::new();
        for m in msgs {
            let Some(root) = m.thread_ts.as_deref().filter(|t| *t != m.ts && !here.contains(t)) else { continue };
            if !asked.insert(root) {
                continue;
            }
            let id = plan::message_id(&conv.id, root);
            if store.get_message(&id).await?.is_some() {
                ex.messages.insert(id);
            }
        }
    }
    Ok(ex)
}

/// Plans against the store (read-only); nothing is written.
pub async fn dry_run(store: Option<&dyn Store>, archive: &Archive) -> Result<Plan, ImportError> {
    let existing = match store {
        Some(s) => resolve(s, archive).await?,
        None => Existing::default(),
    };
    Ok(plan::plan(archive, &existing))
}

/// Plans and writes; returns the summary. `progress(done, total)` counts messages written.
pub async fn run(store: &dyn Store, archive: &Archive, progress: ImportProgress) -> Result<Summary, ImportError> {
    let existing = resolve(store, archive).await?;
    let mut plan = plan::plan(archive, &existing);
    let batch = std::mem::take(&mut plan.batch);
    let outcome = store.import(batch, progress).await?;
    Ok(plan.summary(Some(&outcome)))
}
