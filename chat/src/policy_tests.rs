//! The §3 matrix as a test: every role × every method, allowed or refused; then the rules around it
//! (private-group deletion, non-member invisibility, last owner, archived and read-only rooms, windows).

use std::collections::BTreeMap;

use super::*;
use crate::ids::{MessageId, RoomId};
use crate::message::{Message, UserRef};
use crate::room::NotifyLevel;
use crate::unread::{MentionCounts, ReadState, RoomCounters};

const NOW: Millis = 10_000_000;

/// The §3 columns: how the actor is made.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Col {
    Admin,
    Owner,
    Moderator,
    User,
    Guest,
    Bot,
}

const COLS: [Col; 6] = [Col::Admin, Col::Owner, Col::Moderator, Col::User, Col::Guest, Col::Bot];

impl Col {
    fn global(self) -> Vec<Role> {
        match self {
            Col::Admin => vec![Role::Admin],
            Col::Owner | Col::Moderator | Col::User => vec![Role::User],
            Col::Guest => vec![Role::Guest],
            Col::Bot => vec![Role::Bot],
        }
    }

    fn room_roles(self) -> Vec<Role> {
        match self {
            Col::Owner => vec![Role::Owner],
            Col::Moderator => vec![Role::Moderator],
            _ => vec![],
        }
    }
}

fn room(t: RoomType) -> Room {
    Room {
        id: RoomId::from("room1"),
        t,
        name: (t != RoomType::Direct).then(|| "room1".to_owned()),
        fname: "room1".into(),
        topic: String::new(),
        description: String::new(),
        announcement: String::new(),
        creator: UserId::from("someone"),
        dm_key: None,
        read_only: false,
        react_when_read_only: false,
        archived: false,
        default: false,
        users_count: 3,
        counters: RoomCounters::default(),
        last_message_at: None,
        created_at: 0,
        updated_at: 0,
    }
}

fn sub(uid: &str, t: RoomType, roles: Vec<Role>) -> Subscription {
    Subscription {
        rid: RoomId::from("room1"),
        uid: UserId::from(uid),
        username: uid.into(),
        t,
        roles,
        joined_at: 0,
        open: true,
        read: ReadState::default(),
        mentions: MentionCounts::default(),
        favorite: false,
        notify: NotifyLevel::Default,
        disable_notifications: false,
        mute_group_mentions: false,
        updated_at: 0,
    }
}

fn message(author: &str, ts: Millis) -> Message {
    Message {
        id: MessageId::from("m1"),
        rid: RoomId::from("room1"),
        seq: 1,
        u: UserRef { id: UserId::from(author), username: author.into(), name: author.into() },
        msg: "hi".into(),
        t: None,
        ts,
        updated_at: ts,
        edited_at: None,
        edited_by: None,
        tmid: None,
        tshow: false,
        timeline: true,
        tcount: 0,
        tlm: None,
        replies: vec![],
        mentions: vec![],
        group_mention: false,
        reactions: BTreeMap::new(),
        pinned: false,
        pinned_at: None,
        pinned_by: None,
        attachments: vec![],
        client_msg_id: None,
        deleted_at: None,
    }
}

/// One scenario: room setup, membership of the actor, and the method.
#[derive(Clone, Copy)]
struct Case {
    name: &'static str,
    t: RoomType,
    member: bool,
    archived: bool,
    read_only: bool,
    /// Settings: edit/delete window of 1 minute and the message is old.
    windowed: bool,
    global: bool,
    m: M,
}

#[derive(Clone, Copy)]
enum M {
    SelfService,
    CreatePersonalToken,
    UserSearch,
    CreateChannel,
    CreateGroup,
    OpenDirect,
    Directory,
    ManageIntegrations,
    AdminCreateUser,
    AdminSetRoles,
    AdminSetPermission,
    AdminLogoutUser,
    AdminIssueToken,
    AdminListUsers,
    AdminViewSettings,
    AdminEditSettings,
    AdminViewCluster,
    Read,
    Join,
    Leave,
    AddMembers,
    RemoveMember,
    Update,
    SetReadOnly,
    SetOwner,
    SetModerator,
    Archive,
    Unarchive,
    Delete,
    MemberSelf,
    Send,
    SendAll,
    SendHere,
    SendImpersonate,
    EditOwn,
    EditOther,
    DeleteOwn,
    DeleteOther,
    React,
    Pin,
}

fn case(name: &'static str, t: RoomType, m: M) -> Case {
    Case { name, t, member: true, archived: false, read_only: false, windowed: false, global: false, m }
}

fn global(name: &'static str, m: M) -> Case {
    Case { global: true, ..case(name, RoomType::Channel, m) }
}

fn run(col: Col, c: Case) -> Result<()> {
    let mut settings = Settings::default();
    if c.windowed {
        settings.message_block_edit_in_minutes = 1;
        settings.message_block_delete_in_minutes = 1;
    }
    let table = PermissionTable::default();
    let policy = Policy { permissions: &table, settings: &settings };
    let actor = Actor { id: UserId::from("actor"), roles: col.global() };
    let mut r = room(c.t);
    r.archived = c.archived;
    r.read_only = c.read_only;
    let my_sub = sub("actor", c.t, col.room_roles());
    let other = sub("other", c.t, vec![Role::Owner]);
    let ts = if c.windowed { NOW - 5 * 60_000 } else { NOW - 1_000 };
    let own_msg = message("actor", ts);
    let other_msg = message("other", ts);
    let view = RoomView { room: &r, sub: c.member.then_some(&my_sub) };
    let owners = 2;
    let method = match c.m {
        M::SelfService => Method::SelfService,
        M::CreatePersonalToken => Method::CreatePersonalToken,
        M::UserSearch => Method::UserSearch,
        M::CreateChannel => Method::CreateChannel,
        M::CreateGroup => Method::CreateGroup,
        M::OpenDirect => Method::OpenDirect,
        M::Directory => Method::Directory,
        M::ManageIntegrations => Method::ManageIncomingIntegrations,
        M::AdminCreateUser => Method::AdminCreateUser,
        M::AdminSetRoles => Method::AdminSetRoles,
        M::AdminSetPermission => Method::AdminSetPermission,
        M::AdminLogoutUser => Method::AdminLogoutUser,
        M::AdminIssueToken => Method::AdminIssueToken,
        M::AdminListUsers => Method::AdminListUsers,
        M::AdminViewSettings => Method::AdminViewSettings,
        M::AdminEditSettings => Method::AdminEditSettings,
        M::AdminViewCluster => Method::AdminViewCluster,
        M::Read => Method::ReadRoom,
        M::Join => Method::JoinRoom,
        M::Leave => Method::LeaveRoom { owners },
        M::AddMembers => Method::AddMembers,
        M::RemoveMember => Method::RemoveMember { target: &other, owners },
        M::Update => Method::UpdateRoom,
        M::SetReadOnly => Method::SetReadOnly,
        M::SetOwner => Method::SetRole { role: Role::Owner, add: true, target: &other, owners },
        M::SetModerator => Method::SetRole { role: Role::Moderator, add: true, target: &other, owners },
        M::Archive => Method::Archive,
        M::Unarchive => Method::Unarchive,
        M::Delete => Method::DeleteRoom,
        M::MemberSelf => Method::MemberSelf,
        M::Send => Method::Send { all: false, here: false, impersonate: false },
        M::SendAll => Method::Send { all: true, here: false, impersonate: false },
        M::SendHere => Method::Send { all: false, here: true, impersonate: false },
        M::SendImpersonate => Method::Send { all: false, here: false, impersonate: true },
        M::EditOwn => Method::Edit { message: &own_msg, now: NOW },
        M::EditOther => Method::Edit { message: &other_msg, now: NOW },
        M::DeleteOwn => Method::Delete { message: &own_msg, now: NOW },
        M::DeleteOther => Method::Delete { message: &other_msg, now: NOW },
        M::React => Method::React { message: &other_msg },
        M::Pin => Method::Pin { message: &other_msg },
    };
    policy.authorize(&actor, method, (!c.global).then_some(view))
}

const Y: bool = true;
const N: bool = false;

#[test]
fn every_role_times_every_method_matches_the_section_3_matrix() {
    use RoomType::{Channel as C, Direct as D, Group as P};
    // Columns: admin, owner, moderator, user, guest, bot. "–" cells of §3 (global permissions for the
    // room-role columns) follow the holder's global role, `user`.
    let rows: Vec<(Case, [bool; 6])> = vec![
        (global("login / logout / status / search", M::SelfService), [Y, Y, Y, Y, Y, Y]),
        (global("token.createPersonal", M::CreatePersonalToken), [Y, Y, Y, Y, N, N]),
        (global("user.search (view-outside-room)", M::UserSearch), [Y, Y, Y, Y, N, N]),
        (global("room.createChannel", M::CreateChannel), [Y, Y, Y, Y, N, Y]),
        (global("room.createGroup", M::CreateGroup), [Y, Y, Y, Y, N, Y]),
        (global("room.openDirect", M::OpenDirect), [Y, Y, Y, Y, N, Y]),
        (global("room.directory", M::Directory), [Y, Y, Y, Y, N, Y]),
        (global("integration.*", M::ManageIntegrations), [Y, N, N, N, N, N]),
        (global("admin.user.create", M::AdminCreateUser), [Y, N, N, N, N, N]),
        (global("admin.user.setRoles", M::AdminSetRoles), [Y, N, N, N, N, N]),
        (global("admin.permission.set", M::AdminSetPermission), [Y, N, N, N, N, N]),
        (global("admin.user.logout", M::AdminLogoutUser), [Y, N, N, N, N, N]),
        (global("admin.user.issueToken", M::AdminIssueToken), [Y, N, N, N, N, N]),
        (global("admin.user.list", M::AdminListUsers), [Y, N, N, N, N, N]),
        (global("admin.settings.viewPrivileged", M::AdminViewSettings), [Y, N, N, N, N, N]),
        (global("admin.settings.set", M::AdminEditSettings), [Y, N, N, N, N, N]),
        (global("admin.cluster.view", M::AdminViewCluster), [Y, N, N, N, N, N]),
        (Case { member: false, ..case("room.join public channel", C, M::Join) }, [Y, Y, Y, Y, N, Y]),
        (Case { member: false, ..case("read public channel without joining", C, M::Read) }, [Y, Y, Y, Y, N, N]),
        (case("read private group as member", P, M::Read), [Y, Y, Y, Y, Y, Y]),
        (case("read DM as member", D, M::Read), [Y, Y, Y, Y, Y, Y]),
        (case("room.leave channel", C, M::Leave), [Y, Y, Y, Y, Y, Y]),
        (case("room.leave group", P, M::Leave), [Y, Y, Y, Y, Y, Y]),
        (case("room.addMembers", P, M::AddMembers), [Y, Y, Y, N, N, N]),
        (case("room.removeMember", P, M::RemoveMember), [Y, Y, Y, N, N, N]),
        (case("room.update", C, M::Update), [Y, Y, Y, N, N, N]),
        (case("room.setReadOnly", C, M::SetReadOnly), [Y, Y, N, N, N, N]),
        (case("room.setRole owner", C, M::SetOwner), [Y, Y, N, N, N, N]),
        (case("room.setRole moderator", P, M::SetModerator), [Y, Y, N, N, N, N]),
        (case("room.archive", C, M::Archive), [Y, Y, N, N, N, N]),
        (Case { archived: true, ..case("room.unarchive", C, M::Unarchive) }, [Y, N, N, N, N, N]),
        (case("room.delete channel", C, M::Delete), [Y, Y, N, N, N, N]),
        (case("room.delete private group", P, M::Delete), [Y, Y, N, N, N, N]),
        (case("room.delete DM", D, M::Delete), [Y, N, N, N, N, N]),
        (case("subscription.markRead / typing", P, M::MemberSelf), [Y, Y, Y, Y, Y, Y]),
        (case("message.send", C, M::Send), [Y, Y, Y, Y, Y, Y]),
        (case("message.send in a DM", D, M::Send), [Y, Y, Y, Y, Y, Y]),
        (Case { read_only: true, ..case("message.send read-only", C, M::Send) }, [Y, Y, Y, N, N, N]),
        (case("message.send @all", C, M::SendAll), [Y, Y, Y, Y, N, N]),
        (case("message.send @here", C, M::SendHere), [Y, Y, Y, Y, N, N]),
        (case("message.send as alias", C, M::SendImpersonate), [N, N, N, N, N, Y]),
        (case("message.update own", C, M::EditOwn), [Y, Y, Y, Y, Y, Y]),
        (case("message.update others'", C, M::EditOther), [Y, Y, Y, N, N, N]),
        (Case { windowed: true, ..case("message.update own after window", C, M::EditOwn) }, [N, N, N, N, N, Y]),
        (case("message.delete own", C, M::DeleteOwn), [Y, Y, Y, Y, N, Y]),
        (case("message.delete others'", C, M::DeleteOther), [Y, Y, Y, N, N, N]),
        (Case { windowed: true, ..case("message.delete others' after window", C, M::DeleteOther) }, [Y, Y, N, N, N, N]),
        (case("message.react", C, M::React), [Y, Y, Y, Y, Y, Y]),
        (Case { read_only: true, ..case("message.react read-only", C, M::React) }, [Y, Y, Y, N, N, N]),
        (case("message.pin", C, M::Pin), [Y, Y, Y, N, N, N]),
    ];
    let mut failures = Vec::new();
    for (c, expected) in &rows {
        for (col, want) in COLS.iter().zip(expected) {
            let got = run(*col, *c);
            if got.is_ok() != *want {
                failures.push(format!(
                    "{} as {col:?}: expected {}, got {got:?}",
                    c.name,
                    if *want { "allowed" } else { "refused" }
                ));
            }
        }
    }
    assert!(failures.is_empty(), "matrix mismatches:\n{}", failures.join("\n"));
}

#[test]
fn a_private_group_can_be_deleted_only_by_its_owner_or_an_admin() {
    let c = case("delete group", RoomType::Group, M::Delete);
    assert!(run(Col::Owner, c).is_ok());
    assert!(run(Col::Admin, c).is_ok());
    assert!(run(Col::Admin, Case { member: false, ..c }).is_ok(), "admins delete by id without membership");
    for col in [Col::Moderator, Col::User, Col::Guest, Col::Bot] {
        assert!(run(col, c).is_err(), "{col:?} must not delete a private group");
    }
}

#[test]
fn a_non_member_cannot_learn_that_a_private_room_exists() {
    let all = [
        M::Read,
        M::Join,
        M::Leave,
        M::AddMembers,
        M::RemoveMember,
        M::Update,
        M::MemberSelf,
        M::Send,
        M::EditOther,
        M::DeleteOther,
        M::React,
        M::Pin,
        M::Delete,
        M::SetOwner,
    ];
    for t in [RoomType::Group, RoomType::Direct] {
        for m in all {
            let c = Case { member: false, ..case("non-member", t, m) };
            for col in [Col::User, Col::Guest, Col::Bot] {
                let err = run(col, c).expect_err("non-members are refused");
                assert!(matches!(err, ChatError::NotFound { .. }), "{t:?} {col:?}: {err:?}");
            }
        }
        // Admins manage by id but still cannot read, post or react.
        for m in [M::Read, M::Send, M::React, M::EditOther, M::MemberSelf] {
            let err = run(Col::Admin, Case { member: false, ..case("admin", t, m) }).expect_err("admins do not read");
            assert!(matches!(err, ChatError::NotFound { .. }), "{t:?} admin: {err:?}");
        }
    }
}

#[test]
fn the_last_owner_must_hand_over_before_leaving_or_dropping_ownership() {
    let settings = Settings::default();
    let table = PermissionTable::default();
    let policy = Policy { permissions: &table, settings: &settings };
    let actor = Actor { id: UserId::from("actor"), roles: vec![Role::User] };
    let r = room(RoomType::Group);
    let mine = sub("actor", RoomType::Group, vec![Role::Owner]);
    let view = RoomView { room: &r, sub: Some(&mine) };
    let err = policy.authorize(&actor, Method::LeaveRoom { owners: 1 }, Some(view)).unwrap_err();
    assert!(matches!(err, ChatError::LastOwner));
    assert!(policy.authorize(&actor, Method::LeaveRoom { owners: 2 }, Some(view)).is_ok());
    let drop_own = Method::SetRole { role: Role::Owner, add: false, target: &mine, owners: 1 };
    assert!(matches!(policy.authorize(&actor, drop_own, Some(view)), Err(ChatError::LastOwner)));
    let other = sub("other", RoomType::Group, vec![Role::Owner]);
    let admin = Actor { id: UserId::from("admin"), roles: vec![Role::Admin] };
    let kick_last = Method::RemoveMember { target: &other, owners: 1 };
    assert!(matches!(
        policy.authorize(&admin, kick_last, Some(RoomView { room: &r, sub: None })),
        Err(ChatError::LastOwner)
    ));
}

#[test]
fn archived_rooms_are_readable_but_take_no_writes() {
    let c = Case { archived: true, ..case("archived", RoomType::Channel, M::Send) };
    assert!(matches!(run(Col::Owner, c), Err(ChatError::RoomArchived)));
    assert!(run(Col::User, Case { m: M::Read, ..c }).is_ok());
    assert!(matches!(run(Col::User, Case { m: M::React, ..c }), Err(ChatError::RoomArchived)));
    assert!(matches!(run(Col::Admin, Case { m: M::EditOwn, ..c }), Err(ChatError::RoomArchived)));
}

#[test]
fn read_only_refusal_says_read_only() {
    let c = Case { read_only: true, ..case("ro", RoomType::Channel, M::Send) };
    assert!(matches!(run(Col::User, c), Err(ChatError::ReadOnly)));
}

#[test]
fn edit_window_error_names_the_window() {
    let c = Case { windowed: true, ..case("late edit", RoomType::Channel, M::EditOwn) };
    assert!(matches!(run(Col::User, c), Err(ChatError::WindowPassed { action: "edit", minutes: 1 })));
}

#[test]
fn message_methods_authorize_by_the_messages_own_room() {
    let settings = Settings::default();
    let table = PermissionTable::default();
    let policy = Policy { permissions: &table, settings: &settings };
    let actor = Actor { id: UserId::from("actor"), roles: vec![Role::Admin] };
    let r = room(RoomType::Channel);
    let mine = sub("actor", RoomType::Channel, vec![Role::Owner]);
    let mut elsewhere = message("other", NOW);
    elsewhere.rid = RoomId::from("private-room");
    let view = RoomView { room: &r, sub: Some(&mine) };
    let err = policy.authorize(&actor, Method::Delete { message: &elsewhere, now: NOW }, Some(view)).unwrap_err();
    assert!(matches!(err, ChatError::NotFound { .. }));
}

#[test]
fn admin_edits_to_the_table_change_decisions() {
    let settings = Settings::default();
    let mut table = PermissionTable::default();
    table.set(Permission::CreateD, vec![Role::Admin, Role::User, Role::Guest]).unwrap();
    let policy = Policy { permissions: &table, settings: &settings };
    let guest = Actor { id: UserId::from("g"), roles: vec![Role::Guest] };
    assert!(policy.authorize(&guest, Method::OpenDirect, None).is_ok());
}

#[test]
fn deactivated_users_are_not_actors() {
    let user = User {
        id: UserId::from("u"),
        username: "u".into(),
        name: "U".into(),
        email: None,
        kind: crate::user::UserKind::User,
        roles: vec![Role::User],
        active: false,
        created_at: 0,
        updated_at: 0,
    };
    assert!(matches!(Actor::from_user(&user), Err(ChatError::Deactivated)));
}
