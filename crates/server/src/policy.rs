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

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        Name::new(s).unwrap()
    }

    #[test]
    fn round_robin_cycles_whatever_the_loads() {
        let mut p = RoundRobin::default();
        let got: Vec<GroupId> = (0..7).map(|k| p.assign(&name("c"), &[k, 100, 0])).collect();
        assert_eq!(got, [0, 1, 2, 0, 1, 2, 0]);
        // The number of groups is read each time.
        assert_eq!(p.assign(&name("c"), &[0, 0]), 1);
        assert_eq!(p.assign(&name("c"), &[0, 0]), 0);
        assert_eq!(RoundRobin::default().assign(&name("c"), &[]), 0, "no groups: no panic");
    }

    #[test]
    fn least_loaded_takes_the_minimum_and_the_lowest_index_on_ties() {
        let mut p = LeastLoaded;
        assert_eq!(p.assign(&name("c"), &[0, 0, 0]), 0);
        assert_eq!(p.assign(&name("c"), &[1, 0, 0]), 1);
        assert_eq!(p.assign(&name("c"), &[5, 3, 4, 3]), 1);
        assert_eq!(p.assign(&name("c"), &[9, 9, 2]), 2);
        assert_eq!(p.assign(&name("c"), &[usize::MAX, 0]), 1);
        assert_eq!(p.assign(&name("c"), &[]), 0, "no groups: no panic");
    }

    /// FNV-1a, written out independently of the policy.
    fn fnv1a(bytes: &[u8]) -> u64 {
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100_0000_01b3);
        }
        h
    }

    #[test]
    fn by_name_is_the_fnv1a_hash_of_the_name_modulo_the_groups() {
        // Known FNV-1a 64 values.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        let mut p = ByName;
        let mut used = std::collections::HashSet::new();
        for k in 0..100 {
            let n = name(&format!("client-{k}"));
            for groups in 1..6usize {
                let g = p.assign(&n, &vec![k; groups]);
                assert_eq!(g as u64, fnv1a(n.as_bytes()) % groups as u64);
                // Loads do not matter.
                assert_eq!(p.assign(&n, &vec![0; groups]), g);
            }
            used.insert(p.assign(&n, &[0; 4]));
        }
        assert_eq!(used.len(), 4, "100 names spread over all 4 groups");
        assert_eq!(p.assign(&name("x"), &[]), 0, "no groups: no panic");
    }
}
