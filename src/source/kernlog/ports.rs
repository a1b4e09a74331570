//! The port catalogue: what an unsolicited packet on a port usually means, and how much it
//! weighs as evidence. The built-in list is `feeds/ports.yaml`, compiled into the binary; the
//! config's `kernel_log.ports` entries are applied after it (a later entry wins for the ports it
//! covers).
//!
//! [`PortEntry`] is what the YAML says; [`Catalogue`] is the lookup built from a list of
//! entries: two dense tables (TCP, UDP) of 65,536 entry numbers each, so a lookup on the hot
//! path is one array index.
//!
//! This module is data only: it must never read files (the built-in list is `include_str!`) and
//! never decide anything but "which entry covers this port".

// The schema (entries as written, the built-in list) is defined by `config`; re-exported here.
pub use crate::config::ports::{
    builtin, PortEntry, PortRange, Proto, ProtoSel, Traffic, Weight, BUILTIN, MAX_WEIGHT,
};

/// How a packet met the catalogue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Match {
    /// Entry number (into [`Catalogue::entries`]).
    Entry(u16),
    /// No entry covers the port.
    Unlisted,
}

/// The lookup built from entries.
pub struct Catalogue {
    entries: Vec<PortEntry>,
    /// Entry number + 1 per port (0: unlisted), probe entries only.
    tcp: Vec<u16>,
    udp: Vec<u16>,
}

impl Catalogue {
    /// Build the lookup; later entries win for the ports they cover. At most 65,535 entries.
    pub fn new(entries: Vec<PortEntry>) -> Catalogue {
        let mut tcp = vec![0u16; 65_536];
        let mut udp = vec![0u16; 65_536];
        let entries: Vec<PortEntry> = entries.into_iter().take(usize::from(u16::MAX)).collect();
        for (i, e) in entries.iter().enumerate() {
            if e.traffic != Traffic::Probes {
                continue;
            }
            // i < u16::MAX (taken above), so i + 1 fits.
            let id = i as u16 + 1;
            let (lo, hi) = (usize::from(e.port.lo), usize::from(e.port.hi));
            if e.proto.covers(Proto::Tcp) {
                tcp[lo..=hi].fill(id);
            }
            if e.proto.covers(Proto::Udp) {
                udp[lo..=hi].fill(id);
            }
        }
        Catalogue { entries, tcp, udp }
    }

    pub fn entries(&self) -> &[PortEntry] {
        &self.entries
    }

    pub fn entry(&self, id: u16) -> Option<&PortEntry> {
        self.entries.get(usize::from(id))
    }

    /// The probe entry covering `port`.
    pub fn probe(&self, proto: Proto, port: u16) -> Match {
        let table = match proto {
            Proto::Tcp => &self.tcp,
            Proto::Udp => &self.udp,
        };
        match table[usize::from(port)] {
            0 => Match::Unlisted,
            id => Match::Entry(id - 1),
        }
    }

    /// The last `traffic: replies` entry covering `port`.
    pub fn reply(&self, proto: Proto, port: u16) -> Match {
        self.entries
            .iter()
            .enumerate()
            .rev()
            .find(|(_, e)| {
                e.traffic == Traffic::Replies && e.proto.covers(proto) && e.port.contains(port)
            })
            .map_or(Match::Unlisted, |(i, _)| Match::Entry(i as u16))
    }

    /// The weight of a probe on `port` (0 when unlisted).
    /// Whether the entry counts only from lines of a dropping rule.
    pub fn only_dropped(&self, m: Match) -> bool {
        match m {
            Match::Entry(id) => self.entry(id).is_some_and(|e| e.only_dropped),
            Match::Unlisted => false,
        }
    }

    pub fn weight(&self, m: Match) -> u8 {
        match m {
            Match::Entry(id) => self.entry(id).map_or(0, |e| e.weight.0),
            Match::Unlisted => 0,
        }
    }

    /// Ports that a probe-logging rule should watch: probe entries with a weight above 0, as
    /// sorted, merged ranges per protocol (later entries win, as in lookups).
    pub fn watched(&self, proto: Proto) -> Vec<PortRange> {
        let table = match proto {
            Proto::Tcp => &self.tcp,
            Proto::Udp => &self.udp,
        };
        let mut out: Vec<PortRange> = Vec::new();
        for (port, &id) in table.iter().enumerate() {
            let weighted = id != 0
                && self.weight(Match::Entry(id - 1)) > 0
                && !self.only_dropped(Match::Entry(id - 1));
            if !weighted {
                continue;
            }
            let port = port as u16; // the table has 65,536 cells
            match out.last_mut() {
                Some(r) if r.hi.checked_add(1) == Some(port) => r.hi = port,
                _ => out.push(PortRange { lo: port, hi: port }),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalogue_parses_and_covers_the_issue_ports() {
        let c = Catalogue::new(builtin().unwrap());
        let w = |p: Proto, port: u16| c.weight(c.probe(p, port));
        // Backdoors outweigh telnet; harmless ports weigh 0 but are listed.
        for port in [1243, 6776, 27374, 30100, 31337, 1524] {
            assert!(w(Proto::Tcp, port) > w(Proto::Tcp, 23), "{port}");
        }
        assert_eq!(w(Proto::Udp, 31789), 6);
        for (p, port) in [
            (Proto::Tcp, 1),
            (Proto::Tcp, 23),
            (Proto::Tcp, 111),
            (Proto::Udp, 137),
            (Proto::Tcp, 139),
            (Proto::Tcp, 1080),
            (Proto::Tcp, 3128),
            (Proto::Udp, 5632),
            (Proto::Tcp, 32770),
            (Proto::Udp, 32900),
        ] {
            assert!(w(p, port) > 0, "{p} {port}");
        }
        assert_eq!(w(Proto::Tcp, 32901), 0);
        for (p, port) in [(Proto::Udp, 67), (Proto::Udp, 68), (Proto::Udp, 33434)] {
            assert!(matches!(c.probe(p, port), Match::Entry(_)), "{port} listed");
            assert_eq!(w(p, port), 0, "{port}");
        }
        assert_eq!(c.probe(Proto::Tcp, 8123), Match::Unlisted);
        assert!(matches!(c.reply(Proto::Tcp, 40000), Match::Entry(_)));
        assert!(matches!(c.reply(Proto::Udp, 53), Match::Entry(_)));
    }

    #[test]
    fn later_entries_win_and_ranges_parse() {
        let mut e = builtin().unwrap();
        e.push(PortEntry {
            port: PortRange::parse("31337").unwrap(),
            proto: ProtoSel::Tcp,
            name: Some("my-game".into()),
            weight: Weight(0),
            traffic: Traffic::Probes,
            means: None,
            only_dropped: false,
        });
        let c = Catalogue::new(e);
        assert_eq!(c.weight(c.probe(Proto::Tcp, 31337)), 0);
        assert_eq!(c.weight(c.probe(Proto::Udp, 31337)), 6);
        assert!(PortRange::parse("10-2").is_err());
        assert!(PortRange::parse("65536").is_err());
        assert!(PortRange::parse("x").is_err());
        assert_eq!(
            PortRange::parse(" 32770-32900 ").unwrap(),
            PortRange {
                lo: 32770,
                hi: 32900
            }
        );
    }

    #[test]
    fn watched_ports_are_merged_weighted_ranges() {
        let c = Catalogue::new(builtin().unwrap());
        let tcp = c.watched(Proto::Tcp);
        assert!(tcp.contains(&PortRange { lo: 137, hi: 139 }), "{tcp:?}");
        assert!(tcp.iter().any(|r| r.contains(23)));
        assert!(!tcp.iter().any(|r| r.contains(80) || r.contains(5060)));
        let udp = c.watched(Proto::Udp);
        assert!(!udp.iter().any(|r| r.contains(67) || r.contains(33434)));
        assert!(udp.iter().any(|r| r.contains(31789)));
    }
}
