//! What a ring is and what an endpoint does: the two words every other module speaks.

use core::fmt;

/// Which algorithm a ring runs. Stored in the header, so an opener learns it from the segment.
///
/// The slot rings (`Spsc`, `Mpmc`) have `capacity` slots of one size; the record rings
/// (`Records`, `RecordsMpsc`) have `capacity` bytes, in which each message takes the bytes it
/// needs (`crate::records`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// One producer, one consumer: Lamport's ring with cached cursors (`crate::spsc`).
    Spsc,
    /// Any number of producers and consumers: Vyukov's bounded queue (`crate::mpmc`).
    Mpmc,
    /// Variable-length records, one producer and one consumer (`crate::records`).
    Records,
    /// Variable-length records, any number of producers and one consumer
    /// (`crate::records`).
    RecordsMpsc,
}

impl Kind {
    /// The header's code for this kind (`docs/layout.md`).
    pub(crate) const fn code(self) -> u32 {
        match self {
            Kind::Spsc => 1,
            Kind::Mpmc => 2,
            Kind::Records => 3,
            Kind::RecordsMpsc => 4,
        }
    }

    /// The kind a header code names, if any.
    pub(crate) const fn from_code(code: u32) -> Option<Kind> {
        match code {
            1 => Some(Kind::Spsc),
            2 => Some(Kind::Mpmc),
            3 => Some(Kind::Records),
            4 => Some(Kind::RecordsMpsc),
            _ => None,
        }
    }

    /// Whether messages take the bytes they need (a record ring) rather than a slot each.
    pub const fn is_records(self) -> bool {
        matches!(self, Kind::Records | Kind::RecordsMpsc)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Spsc => "SPSC",
            Kind::Mpmc => "MPMC",
            Kind::Records => "RECORDS",
            Kind::RecordsMpsc => "RECORDS-MPSC",
        })
    }
}

/// The role an endpoint plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Sends messages.
    Producer,
    /// Receives messages.
    Consumer,
}

impl Role {
    /// The other role: whom an endpoint of this role waits for and talks to.
    pub(crate) const fn peer(self) -> Role {
        match self {
            Role::Producer => Role::Consumer,
            Role::Consumer => Role::Producer,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Producer => "producer",
            Role::Consumer => "consumer",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_codes_round_trip() {
        for k in [Kind::Spsc, Kind::Mpmc, Kind::Records, Kind::RecordsMpsc] {
            assert_eq!(Kind::from_code(k.code()), Some(k));
        }
        assert_eq!(Kind::from_code(0), None);
        assert_eq!(Kind::from_code(5), None);
    }
}
