//! One frontend node with the chat on a fresh SQLite store, shared by the chat test files so each
//! one states only how its node differs (a config closure) and what it checks.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use frontend::acl::AllowAll;
use frontend::chat::{Chat, ChatConfig};
use frontend::Config;
use protocol::Codec;
use serde_json::{json, Value};

use super::{call, Client, TestNode};

/// The password of the bootstrap admin `root` and of every account the tests create.
pub const PW: &str = "correct horse battery";

pub struct ChatNode {
    pub node: TestNode,
    pub chat: Arc<Chat>,
    /// Holds the SQLite file and the uploads; deleted when the node is dropped.
    pub dir: tempfile::TempDir,
}

impl ChatNode {
    /// The JSON WebSocket / HTTP listener.
    pub fn addr(&self) -> SocketAddr {
        self.node.json
    }

    pub fn uploads(&self) -> PathBuf {
        self.dir.path().join("uploads")
    }

    pub async fn set(&self, key: &str, value: Value) {
        self.chat.service().set_setting_as_operator(key, value).await.unwrap();
    }
}

/// A chat node with the bootstrap admin `root` (password [`PW`]).
pub async fn start() -> ChatNode {
    start_with(|_| {}).await
}

/// Like [`start`], with `tweak` applied to the chat config last (it may undo the defaults).
pub async fn start_with(tweak: impl FnOnce(&mut ChatConfig)) -> ChatNode {
    let dir = tempfile::tempdir().unwrap();
    let mut cc = ChatConfig::new(format!("sqlite:{}", dir.path().join("chat.db").display()));
    cc.bootstrap_admin = Some(("root".into(), PW.into()));
    tweak(&mut cc);
    let chat = Chat::start(&cc).await.unwrap();
    // Raw clients answer pings only while they read, and argon2 in debug builds is slow: a socket that
    // waits its turn must not time out.
    let mut config = Config::for_test();
    config.ping_timeout = Duration::from_secs(60);
    let node = TestNode::start(config, chat.app(Arc::new(AllowAll))).await;
    chat.attach(&node.node).await;
    ChatNode { node, chat, dir }
}

/// A logged-in socket and the user id `login` returned.
pub struct User {
    pub c: Client,
    pub id: String,
}

/// A fresh JSON socket, not logged in.
pub async fn connect(n: &ChatNode) -> Client {
    Client::handshake(n.node.json, Codec::Json).await
}

pub async fn login(n: &ChatNode, username: &str) -> User {
    let mut c = connect(n).await;
    let data = call(&mut c, "login", json!({"user": username, "password": PW})).await;
    User { c, id: data["id"].as_str().unwrap().to_owned() }
}

/// `admin` creates each account with password [`PW`].
pub async fn create_accounts(admin: &mut Client, names: &[&str]) {
    for name in names {
        call(admin, "createUser", json!({"username": name, "password": PW})).await;
    }
}

/// The admin creates the accounts, then each logs in on its own socket: `(admin, users in order)`.
pub async fn admin_and_users(n: &ChatNode, names: &[&str]) -> (User, Vec<User>) {
    let mut admin = login(n, "root").await;
    create_accounts(&mut admin.c, names).await;
    let mut out = Vec::new();
    for name in names {
        out.push(login(n, name).await);
    }
    (admin, out)
}

/// Waits until `c` is both kicked out of the room's `channel` and told on its user channel that its
/// subscription to `rid` was removed (the two may arrive in either order).
pub async fn expect_removed(c: &mut Client, channel: &str, rid: &str) {
    let (mut kicked, mut told) = (false, false);
    while !(kicked && told) {
        let p = c.next_matching(|p| p["event"] == "#kickOut" || p["event"] == "#publish").await;
        if p["event"] == "#kickOut" {
            assert_eq!(p["data"]["channel"], channel);
            kicked = true;
        } else if p["data"]["data"]["type"] == "subscription.changed" {
            assert_eq!(p["data"]["data"]["action"], "removed");
            assert_eq!(p["data"]["data"]["rid"], json!(rid));
            told = true;
        }
    }
}
