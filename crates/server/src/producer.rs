//! Producer handles for a group's sessions: any thread pushes to a client by name,
//! connected or not; the group's `poll` moves what was pushed into each session.
//! (A child module of `group`: it works on the group's entries.)

use super::{Group, GroupHandler};
use tcpshm_connection::{Producer, ProducerError};
use tcpshm_proto::Name;

impl<H: GroupHandler> Group<H> {
    /// A handle that pushes messages to `client` from any thread (`Send + Clone`: one
    /// clone per thread), whether the client is connected, offline, or has never
    /// logged in since this server started. This group's [`poll`](Group::poll) moves
    /// what was pushed into the client's session (its persistent queue), in order per
    /// handle; the client receives each message exactly once — at once if it is
    /// connected, at its next login otherwise — even if this server is killed in
    /// between (see `tcpshm_connection::Producer`).
    ///
    /// A session not open in this group yet (its client has not logged in since the
    /// server started) keeps the messages in its producers' queue until its client
    /// logs in to this group. [`ProducerError::Busy`] while another process owns the
    /// session's producers' queue.
    ///
    /// ```
    /// use tcpshm_server::{AcceptAll, Conn, GroupHandler, Handled, Msg, Name, RoundRobin, Server, ServerConfig};
    ///
    /// struct Quiet;
    /// impl GroupHandler for Quiet {
    ///     fn on_message(&mut self, _: &mut Conn<'_>, _: Msg<'_>) -> Handled {
    ///         Handled::Pop
    ///     }
    /// }
    /// # let dir = std::env::temp_dir().join(format!("tcpshm-server-doc-producer-{}", std::process::id()));
    /// let mut cfg = ServerConfig::new("exchange".parse().unwrap(), &dir);
    /// cfg.listen = vec!["127.0.0.1:0".parse().unwrap()];
    /// cfg.enable_shm = false;
    /// let server = Server::bind(cfg, AcceptAll, RoundRobin::default(), vec![Quiet]).unwrap();
    /// let (_control, mut groups) = server.split();
    /// // A fill for a client that is not connected: kept for its next login.
    /// let mut fills = groups[0].producer(&Name::new("trader-7").unwrap()).unwrap();
    /// std::thread::spawn(move || assert!(fills.push(1, b"fill 100@99.5").unwrap())).join().unwrap();
    /// groups[0].poll(1);
    /// # drop(groups); std::fs::remove_dir_all(&dir).ok();
    /// ```
    pub fn producer(&mut self, client: &Name) -> Result<Producer, ProducerError> {
        if let Some(&i) = self.by_name.get(client) {
            if let Some(Some(e)) = self.entries.get_mut(i) {
                let p = e.conn.producer()?;
                self.note_producers(i);
                return Ok(p);
            }
        }
        Producer::for_session(&self.cfg.storage_dir, self.cfg.name, *client, &self.cfg.connection)
    }

    /// Moves what producer handles pushed into their sessions (at the start of each
    /// poll); a session that got messages is offered for writing in this poll.
    pub(super) fn drain_producers(&mut self) {
        for k in 0..self.producing.len() {
            let i = self.producing[k];
            if let Some(Some(e)) = self.entries.get_mut(i) {
                if e.conn.drain_producers() > 0 {
                    self.mark(i);
                }
            }
        }
    }

    /// Entry `i` (new, or given a producers' queue) is drained from now on if its
    /// session has a producers' queue.
    pub(super) fn note_producers(&mut self, i: usize) {
        if let Some(Some(e)) = self.entries.get(i) {
            if e.conn.has_producers() && !self.producing.contains(&i) {
                self.producing.push(i);
            }
        }
    }
}
