//! Webhook integrations (§1.8, §6): admins create, list and delete them and read delivery history;
//! incoming webhooks post as their user. Outgoing deliveries are the frontend's (it sees every
//! `message.new` it publishes); [`Service::outgoing_integrations`] gives it the enabled ones.

use serde_json::Value;

use super::{message_new, user_ref, Caller, Outcome, Sent, Service};
use crate::auth;
use crate::ids::{new_id, now_ms};
use crate::integration::{
    constant_time_eq, Delivery, Integration, IntegrationKind, NewIntegration, DEFAULT_ATTEMPTS, MAX_HISTORY,
    MAX_INTEGRATIONS,
};
use crate::limits::page;
use crate::message::NewMessage;
use crate::policy::{Method, RoomView};
use crate::{ChatError, Result};

/// A new integration and the secret to show once: the incoming URL token, or the outgoing signing secret.
#[derive(Clone, Debug)]
pub struct CreatedIntegration {
    pub integration: Integration,
    pub secret: String,
}

fn manage(kind: IntegrationKind) -> Method<'static> {
    match kind {
        IntegrationKind::Incoming => Method::ManageIncomingIntegrations,
        IntegrationKind::Outgoing => Method::ManageOutgoingIntegrations,
    }
}

/// Every refusal of an incoming webhook: unknown id, wrong token, disabled — one answer (§6).
fn no_hook() -> ChatError {
    ChatError::NotFound { what: "integration" }
}

impl Service {
    /// `integrations.create`: `manage-incoming-integrations` / `manage-outgoing-integrations`. The
    /// post-as user (`username`) must exist; for a private room or DM the creator must be a member
    /// (§6 scope safety: nobody wires a room they cannot read).
    pub async fn create_integration(&self, caller: &Caller, new: NewIntegration) -> Result<CreatedIntegration> {
        let (_, actor) = self.authenticate(caller).await?;
        let kind = new.kind;
        self.authorize(&actor, manage(kind), None)?;
        let bot = self.store.user_by_username(&new.username).await?.ok_or(ChatError::NotFound { what: "user" })?;
        new.validate()?;
        let rid = new.rid.clone();
        if let Some(rid) = &rid {
            let (room, sub) = self.room_and_sub(&actor, rid).await?;
            if room.t.is_private() && sub.is_none() {
                return Err(ChatError::NotFound { what: "room" });
            }
            if kind == IntegrationKind::Incoming && self.store.get_subscription(rid, &bot.id).await?.is_none() {
                return Err(ChatError::invalid("username", "the user must be a member of the room"));
            }
        }
        let token = auth::issue_token();
        let now = now_ms();
        let incoming = kind == IntegrationKind::Incoming;
        let integration = Integration {
            id: new_id(),
            kind,
            name: new.name,
            enabled: new.enabled,
            rid,
            user_id: bot.id,
            username: bot.username,
            alias: new.alias,
            token_hash: incoming.then(|| token.hash.clone()),
            urls: new.urls,
            trigger_words: new.trigger_words,
            trigger_anywhere: new.trigger_anywhere,
            secret: (!incoming).then(|| token.secret.clone()),
            attempts: new.attempts.unwrap_or(DEFAULT_ATTEMPTS),
            created_by: actor.id.clone(),
            created_at: now,
            updated_at: now,
        };
        self.store.create_integration(&integration).await?;
        Ok(CreatedIntegration { integration, secret: token.secret })
    }

    /// Integrations the caller may manage (both kinds for an admin).
    pub async fn list_integrations(&self, caller: &Caller) -> Result<Vec<Integration>> {
        let (_, actor) = self.authenticate(caller).await?;
        let may = |k| self.authorize(&actor, manage(k), None).is_ok();
        let (inc, out) = (may(IntegrationKind::Incoming), may(IntegrationKind::Outgoing));
        if !inc && !out {
            return Err(ChatError::NotAllowed { reason: "manage integrations" });
        }
        let all = self.store.list_integrations(None, MAX_INTEGRATIONS).await?;
        Ok(all.into_iter().filter(|i| if i.kind == IntegrationKind::Incoming { inc } else { out }).collect())
    }

    async fn managed_integration(&self, caller: &Caller, id: &str) -> Result<Integration> {
        let (_, actor) = self.authenticate(caller).await?;
        let i = self.store.get_integration(id).await?.ok_or(ChatError::NotFound { what: "integration" })?;
        self.authorize(&actor, manage(i.kind), None)?;
        Ok(i)
    }

    /// `integrations.remove`.
    pub async fn delete_integration(&self, caller: &Caller, id: &str) -> Result<()> {
        self.managed_integration(caller, id).await?;
        self.store.delete_integration(id).await?;
        Ok(())
    }

    /// `integrations.history`: newest first.
    pub async fn integration_history(&self, caller: &Caller, id: &str, limit: Option<usize>) -> Result<Vec<Delivery>> {
        self.managed_integration(caller, id).await?;
        self.store.deliveries(id, page(limit, MAX_HISTORY)).await
    }

    /// Enabled outgoing webhooks, for the frontend's dispatcher.
    pub async fn outgoing_integrations(&self) -> Result<Vec<Integration>> {
        let all = self.store.list_integrations(Some(IntegrationKind::Outgoing), MAX_INTEGRATIONS).await?;
        Ok(all.into_iter().filter(|i| i.enabled).collect())
    }

    /// `POST /hooks/<id>/<token>` with `{text, attachments?}`: posts as the integration's user into its
    /// room, with that user's permissions (membership, read-only, archived). Every failure to find a
    /// usable integration is the same [`ChatError::NotFound`]; the token is compared by hash in
    /// constant time.
    pub async fn post_incoming(&self, id: &str, token: &str, body: &Value) -> Result<Outcome<Sent>> {
        if id.is_empty() || id.len() > 64 || token.is_empty() || token.len() > 256 {
            return Err(no_hook());
        }
        let i = self.store.get_integration(id).await?.ok_or_else(no_hook)?;
        let stored = i.token_hash.as_deref().unwrap_or_default();
        let ok = constant_time_eq(auth::hash_token(token).as_bytes(), stored.as_bytes());
        if !ok || i.kind != IntegrationKind::Incoming || !i.enabled {
            return Err(no_hook());
        }
        let rid = i.rid.clone().ok_or_else(no_hook)?;
        let user = self.store.get_user(&i.user_id).await?.ok_or_else(no_hook)?;
        let actor = crate::policy::Actor::from_user(&user)?;
        let text = match body.get("text") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(ChatError::invalid("text", "must be a string")),
        };
        let attachments = match body.get("attachments") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a.clone(),
            Some(_) => return Err(ChatError::invalid("attachments", "must be a list")),
        };
        let (room, sub) = self.room_and_sub(&actor, &rid).await?;
        let (mentions, parsed) = self.resolve_mentions(&text).await?;
        let method = Method::Send { all: parsed.all, here: parsed.here, impersonate: false };
        self.authorize(&actor, method, Some(RoomView { room: &room, sub: sub.as_ref() }))?;
        let new = NewMessage {
            rid: rid.clone(),
            u: user_ref(&user),
            msg: text,
            t: None,
            tmid: None,
            tshow: false,
            mentions,
            group_mention: parsed.all || parsed.here,
            attachments,
            client_msg_id: None,
        };
        new.validate(self.settings().message_max_allowed_size)?;
        self.take_send_token(&actor, RoomView { room: &room, sub: sub.as_ref() })?;
        let message = self.store.insert_message(new).await?.value;
        let mut effects = vec![message_new(&message)];
        effects.extend(self.member_effects(&room, &message).await?);
        Ok(Outcome::new(Sent { message, created: true }, effects))
    }
}
