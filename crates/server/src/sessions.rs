//! The sessions of a group, reached by client name from the group's thread: to push
//! to a client unprompted, connected or not.

use crate::config::ServerConfig;
use crate::directory::Directory;
use crate::group::Entry;
use crate::handler::Conn;
use crate::policy::GroupId;
use crate::stats::GroupStats;
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use tcpshm_connection::{Connection, OpenError};
use tcpshm_proto::close::CloseCode;
use tcpshm_proto::login::TransportKind;
use tcpshm_proto::{CloseReason, Name, Nanos, SendError, Transport};
use tcpshm_transport_shm::Side;

/// Why a session could not be reached.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The server has no session with this client: it never logged in to a server of
    /// this name (no store in [`ServerConfig::storage_dir`]). Refused rather than
    /// created, so that a mistyped name does not grow a queue no one will read; see
    /// [`Sessions::create`] to make one on purpose.
    #[error("the server has no session with client {client} (it never logged in under this server's name)")]
    Unknown {
        /// The client.
        client: Name,
    },
    /// Another group serves this client's session (its home; see [`Sessions`]):
    /// push to it from that group.
    #[error("client {client}'s session is served by group {home}, not by group {here}")]
    OtherGroup {
        /// The client.
        client: Name,
        /// The group that serves it.
        home: GroupId,
        /// This group.
        here: GroupId,
    },
    /// A session not held by this group yet can only be opened from
    /// [`GroupHandler::on_poll`](crate::GroupHandler::on_poll) or
    /// [`Group::sessions`](crate::Group::sessions), not while a message is handled
    /// (opening adds a session to the group).
    #[error("the session of client {client} is not open in this group; open it from on_poll")]
    NotOpen {
        /// The client.
        client: Name,
    },
    /// Opening the session's store (or its shared-memory file) failed.
    #[error("cannot open the session of client {client}: {source}")]
    Open {
        /// The client.
        client: Name,
        /// Why (boxed: the rare case should not make every result large).
        source: Box<OpenError>,
    },
    /// The message was refused (too large, a reserved type, a storage failure).
    #[error(transparent)]
    Send(#[from] SendError),
}

/// The entries a [`Sessions`] reaches: all of the group's, or all but the one whose
/// message is being handled (borrowed apart, so the handler holds both).
pub(crate) enum Table<'a> {
    Whole {
        entries: &'a mut Vec<Option<Entry>>,
        free: &'a mut Vec<usize>,
        by_name: &'a mut HashMap<Name, usize>,
    },
    Around {
        head: &'a mut [Option<Entry>],
        tail: &'a mut [Option<Entry>],
        hole: usize,
        by_name: &'a HashMap<Name, usize>,
    },
}

impl Table<'_> {
    fn index(&self, client: &Name) -> Option<usize> {
        match self {
            Table::Whole { by_name, .. } => by_name.get(client).copied(),
            Table::Around { by_name, .. } => by_name.get(client).copied(),
        }
    }

    fn entry(&mut self, i: usize) -> Option<&mut Entry> {
        match self {
            Table::Whole { entries, .. } => entries.get_mut(i)?.as_mut(),
            Table::Around { head, tail, hole, .. } => {
                if i < *hole {
                    head.get_mut(i)?.as_mut()
                } else if i > *hole {
                    tail.get_mut(i - *hole - 1)?.as_mut()
                } else {
                    None
                }
            }
        }
    }

    fn len(&self) -> usize {
        match self {
            Table::Whole { entries, .. } => entries.len(),
            Table::Around { head, tail, .. } => head.len() + 1 + tail.len(),
        }
    }
}

/// The sessions of one group, by client name, from the group's thread: push to any
/// client of the group without a message having arrived from it — a fill, a
/// market-data tick, a notice — whether it is connected or not.
///
/// Given to [`GroupHandler::on_poll`](crate::GroupHandler::on_poll) at every poll,
/// reachable from a [`Conn`] while a message is handled ([`Conn::sessions`]: every
/// session but the one handled, which is the `Conn` itself), and from the group's
/// owner between polls ([`Group::sessions`](crate::Group::sessions)).
///
/// **Connected or not.** A message pushed to a session whose client is away is
/// published in its persistent queue at once (crash-safe when the push returns) and
/// delivered at the client's next login, over either transport, in order with
/// everything else queued — that is what the persistent queue is for. To a connected
/// client it leaves at once over shared memory, or with the group's writes at the end
/// of the poll over TCP.
///
/// **Which group.** A session has one *home* group at a time: the first group that
/// holds it in this process — the one its first login was admitted to (the
/// [`ShardPolicy`](crate::ShardPolicy) and the [`LoginHandler`](crate::LoginHandler)
/// chose), or the group that [`open`](Self::open)ed it to push to the client while it
/// was away (later logins then go to that group). Pushing from another group is
/// refused ([`SessionError::OtherGroup`]). After a restart the homes start empty; with
/// [`ByName`](crate::ByName), open a client's session only from the group `ByName`
/// gives it, and homes stay the same across restarts.
///
/// **Clients never seen.** [`open`](Self::open) refuses a client this server has no
/// session with ([`SessionError::Unknown`]: no store under this server's name — it
/// never logged in, or the server was renamed since); [`create`](Self::create) makes
/// its session on purpose (an account provisioned before its first login).
///
/// ```
/// use tcpshm_server::{Conn, GroupHandler, Handled, Sessions};
/// use tcpshm_proto::{Msg, Name, Nanos};
///
/// /// Sends each client in `fills` its fill at the next poll, connected or not.
/// struct Fills { due: Vec<(Name, [u8; 16])> }
/// impl GroupHandler for Fills {
///     fn on_message(&mut self, _conn: &mut Conn<'_>, _msg: Msg<'_>) -> Handled { Handled::Pop }
///     fn on_poll(&mut self, sessions: &mut Sessions<'_>, _now: Nanos) {
///         while let Some((client, fill)) = self.due.last() {
///             match sessions.push(client, 7, fill) {
///                 Ok(true) => { self.due.pop(); }
///                 Ok(false) => break, // its queue is full: next poll
///                 Err(e) => { eprintln!("fill for {client} dropped: {e}"); self.due.pop(); }
///             }
///         }
///     }
/// }
/// ```
pub struct Sessions<'a> {
    pub(crate) group: GroupId,
    pub(crate) table: Table<'a>,
    /// Entries pushed to or closed through this value: the group writes them out.
    pub(crate) touched: &'a mut Vec<usize>,
    pub(crate) cfg: &'a ServerConfig,
    pub(crate) dir: &'a Directory,
    /// The group's live counters (a created session gets a record).
    pub(crate) stats: &'a GroupStats,
    pub(crate) now: Nanos,
    /// A close asked through the last `Conn` handed out (`close_with`), and its entry.
    close: Option<String>,
    close_at: usize,
}

impl std::fmt::Debug for Sessions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").field("group", &self.group).field("held", &self.len()).finish_non_exhaustive()
    }
}

impl<'a> Sessions<'a> {
    pub(crate) fn new(
        group: GroupId,
        table: Table<'a>,
        touched: &'a mut Vec<usize>,
        cfg: &'a ServerConfig,
        dir: &'a Directory,
        stats: &'a GroupStats,
        now: Nanos,
    ) -> Sessions<'a> {
        Sessions { group, table, touched, cfg, dir, stats, now, close: None, close_at: 0 }
    }

    /// This group.
    pub fn group(&self) -> GroupId {
        self.group
    }

    /// How many sessions this group holds (connected or not; the one being handled
    /// included).
    pub fn len(&self) -> usize {
        match &self.table {
            Table::Whole { by_name, .. } => by_name.len(),
            Table::Around { by_name, .. } => by_name.len(),
        }
    }

    /// Whether the group holds no session.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether this group holds `client`'s session.
    pub fn contains(&self, client: &Name) -> bool {
        self.table.index(client).is_some()
    }

    /// The clients whose sessions this group holds, in no particular order.
    pub fn names(&self) -> impl Iterator<Item = &Name> + '_ {
        match &self.table {
            Table::Whole { by_name, .. } => by_name.keys(),
            Table::Around { by_name, .. } => by_name.keys(),
        }
    }

    /// The session of `client` if this group holds it (connected or not), else
    /// `None` — also for the session whose message is being handled (that one is the
    /// handler's `Conn`).
    pub fn get(&mut self, client: &Name) -> Option<Conn<'_>> {
        self.settle();
        let i = self.table.index(client)?;
        self.table.entry(i)?;
        Some(self.conn(i))
    }

    /// The session of `client`: held by this group, or opened from its store (the
    /// client is away and this process has not served it yet, e.g. after a restart).
    /// Refused for a client the server has no session with
    /// ([`SessionError::Unknown`]), for one another group serves
    /// ([`SessionError::OtherGroup`]), and while a message is handled for one not held
    /// yet ([`SessionError::NotOpen`]).
    pub fn open(&mut self, client: &Name) -> Result<Conn<'_>, SessionError> {
        self.open_with(client, false)
    }

    /// [`open`](Self::open), creating the session if the server has none with
    /// `client` yet: messages pushed now wait for its first login.
    pub fn create(&mut self, client: &Name) -> Result<Conn<'_>, SessionError> {
        self.open_with(client, true)
    }

    /// Pushes one message (a copy of `payload`, type `msg_type`) to `client`'s
    /// session, [`open`](Self::open)ing it if needed. `Ok(false)`: its queue is full
    /// now (try again later).
    pub fn push(&mut self, client: &Name, msg_type: u16, payload: &[u8]) -> Result<bool, SessionError> {
        let mut conn = self.open(client)?;
        let Some(buf) = conn.alloc(payload.len())? else { return Ok(false) };
        buf.copy_from_slice(payload);
        conn.push(msg_type)?;
        Ok(true)
    }

    /// Calls `f` with every session this group holds (connected or not; not the one
    /// whose message is being handled), in no particular order: a broadcast.
    pub fn for_each(&mut self, mut f: impl FnMut(&mut Conn<'_>)) {
        self.settle();
        for i in 0..self.table.len() {
            let group = self.group;
            let Some(e) = self.table.entry(i) else { continue };
            let before = e.conn.session().seq().next_seq();
            let mut close = None;
            let connected = e.conn.is_connected();
            let mut conn = Conn {
                client: e.client,
                peer: e.peer,
                group,
                send: e.conn.sender(),
                close: &mut close,
                eager: true,
                connected,
                others: None,
            };
            f(&mut conn);
            if let Some(text) = close {
                e.conn.close(CloseReason::RemoteRequested { code: CloseCode::REQUESTED, text });
            } else if e.conn.session().seq().next_seq() == before {
                continue;
            }
            self.touched.push(i);
        }
    }

    fn open_with(&mut self, client: &Name, create: bool) -> Result<Conn<'_>, SessionError> {
        self.settle();
        if let Some(i) = self.table.index(client) {
            if self.table.entry(i).is_some() {
                return Ok(self.conn(i));
            }
        }
        let Table::Whole { entries, free, by_name } = &mut self.table else {
            return Err(SessionError::NotOpen { client: *client });
        };
        let cfg = self.cfg;
        let path = cfg.storage_dir.join(tcpshm_persist::file_name(&cfg.name, client));
        if !create && !path.exists() {
            return Err(SessionError::Unknown { client: *client });
        }
        let (home, slot) = self.dir.home(*client, self.group);
        if home != self.group {
            return Err(SessionError::OtherGroup { client: *client, home, here: self.group });
        }
        // Pushes go to the store until a login says which medium carries the session
        // (one sequence either way: a shared-memory login drains the store into the
        // rings).
        let conn = Connection::open_session(
            &cfg.storage_dir,
            cfg.name,
            *client,
            Side::Server,
            TransportKind::Tcp,
            cfg.connection.clone(),
            self.now,
        )
        .map_err(|source| SessionError::Open { client: *client, source: Box::new(source) })?;
        let entry = Entry::new(*client, SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)), conn, slot, self.stats.entry());
        let i = match free.pop() {
            Some(i) => {
                entries[i] = Some(entry);
                i
            }
            None => {
                entries.push(Some(entry));
                entries.len() - 1
            }
        };
        by_name.insert(*client, i);
        Ok(self.conn(i))
    }

    /// A `Conn` on entry `i` (which exists), counted as touched.
    fn conn(&mut self, i: usize) -> Conn<'_> {
        self.touched.push(i);
        self.close_at = i;
        let group = self.group;
        let e = self.table.entry(i).expect("the entry exists");
        let connected = e.conn.is_connected();
        Conn {
            client: e.client,
            peer: e.peer,
            group,
            send: e.conn.sender(),
            close: &mut self.close,
            eager: true,
            connected,
            others: None,
        }
    }

    /// Carries out a close asked through the last `Conn` handed out. Inline: after
    /// every handled message, where nothing is asked almost always.
    #[inline]
    pub(crate) fn settle(&mut self) {
        if self.close.is_some() {
            self.close_asked();
        }
    }

    #[inline(never)]
    fn close_asked(&mut self) {
        if let Some(text) = self.close.take() {
            if let Some(e) = self.table.entry(self.close_at) {
                e.conn.close(CloseReason::RemoteRequested { code: CloseCode::REQUESTED, text });
            }
        }
    }
}
