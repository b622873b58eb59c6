//! Sharding: which group a new connection goes to.

use tcpshm_proto::Name;

/// A group index, `0..groups`.
pub type GroupId = usize;

/// Chooses a group for each new connection. `loads[g]` is the number of connections
/// group `g` holds now. Called on the control thread.
///
/// ```
/// use tcpshm_server::{ShardPolicy, RoundRobin};
/// let mut p = RoundRobin::default();
/// let n = "c".parse().unwrap();
/// assert_eq!((p.assign(&n, &[0, 0]), p.assign(&n, &[1, 0]), p.assign(&n, &[1, 1])), (0, 1, 0));
/// ```
pub trait ShardPolicy: Send {
    /// The group for `client`; must be `< loads.len()` (checked: an out-of-range
    /// answer refuses the login, it never indexes out of bounds).
    fn assign(&mut self, client: &Name, loads: &[usize]) -> GroupId;
}

/// Each new connection to the next group in turn.
#[derive(Debug, Default, Clone)]
pub struct RoundRobin {
    next: usize,
}

impl ShardPolicy for RoundRobin {
    fn assign(&mut self, _client: &Name, loads: &[usize]) -> GroupId {
        let g = self.next % loads.len().max(1);
        self.next = g + 1;
        g
    }
}

/// Each new connection to the group with the fewest connections (lowest index on ties).
///
/// ```
/// use tcpshm_server::{LeastLoaded, ShardPolicy};
/// assert_eq!(LeastLoaded.assign(&"c".parse().unwrap(), &[3, 1, 1]), 1);
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct LeastLoaded;

impl ShardPolicy for LeastLoaded {
    fn assign(&mut self, _client: &Name, loads: &[usize]) -> GroupId {
        loads.iter().enumerate().min_by_key(|(i, l)| (**l, *i)).map(|(i, _)| i).unwrap_or(0)
    }
}

/// The same client name always to the same group (FNV-1a hash of the name), so a
/// client's work stays on one thread across reconnects and restarts.
///
/// ```
/// use tcpshm_server::{ByName, ShardPolicy};
/// let n = "trader-7".parse().unwrap();
/// assert_eq!(ByName.assign(&n, &[0; 4]), ByName.assign(&n, &[9; 4]));
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct ByName;

impl ShardPolicy for ByName {
    fn assign(&mut self, client: &Name, loads: &[usize]) -> GroupId {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in client.as_bytes() {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        (h % loads.len().max(1) as u64) as usize
    }
}
