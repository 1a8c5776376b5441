use libp2p::{Multiaddr, PeerId};

use super::source_of;

fn addr(s: &str) -> Multiaddr {
    s.parse().unwrap()
}

#[test]
fn fresh_peer_ids_from_one_address_share_a_source() {
    let a = source_of(&addr("/ip4/203.0.113.7/tcp/4001"), &PeerId::random());
    let b = source_of(&addr("/ip4/203.0.113.7/tcp/5555"), &PeerId::random());
    assert_eq!(a, b);
    let lan_a = source_of(&addr("/ip4/192.168.1.20/tcp/1"), &PeerId::random());
    let lan_b = source_of(&addr("/ip4/192.168.1.20/udp/2/quic-v1"), &PeerId::random());
    assert_eq!(lan_a, lan_b);
}

#[test]
fn neighbours_and_other_hosts_are_other_sources() {
    let p = PeerId::random();
    assert_ne!(
        source_of(&addr("/ip4/203.0.113.7/tcp/1"), &p),
        source_of(&addr("/ip4/203.0.113.8/tcp/1"), &p)
    );
    assert_ne!(
        source_of(&addr("/ip4/192.168.1.20/tcp/1"), &p),
        source_of(&addr("/ip4/192.168.1.21/tcp/1"), &p)
    );
}

#[test]
fn ipv6_counts_by_its_64() {
    let a = source_of(&addr("/ip6/2001:db8:1:2::1/tcp/1"), &PeerId::random());
    let b = source_of(&addr("/ip6/2001:db8:1:2:ffff::9/tcp/1"), &PeerId::random());
    let c = source_of(&addr("/ip6/2001:db8:1:3::1/tcp/1"), &PeerId::random());
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn loopback_and_circuits_are_one_source_whatever_the_peer_id() {
    // A fresh PeerId per connection must not mean a fresh quota.
    let (p, q) = (PeerId::random(), PeerId::random());
    for remote in ["/ip4/127.0.0.1/tcp/1", "/ip6/::1/tcp/1"] {
        assert_eq!(
            source_of(&addr(remote), &p),
            source_of(&addr(remote), &q),
            "{remote}"
        );
    }
    let via = |relay: &str| addr(&format!("/ip4/203.0.113.7/tcp/1/p2p/{relay}/p2p-circuit"));
    let r1 = "12D3KooWRBhwfeP2Y4TCx1SM6s9rUoHhR5STiGwxBhgFRcw3UERE";
    let r2 = "12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo";
    assert_eq!(source_of(&via(r1), &p), source_of(&via(r1), &q));
    assert_ne!(source_of(&via(r1), &p), source_of(&via(r2), &p));
    // Circuits do not share the relay host's own address source.
    assert_ne!(
        source_of(&via(r1), &p),
        source_of(&addr("/ip4/203.0.113.7/tcp/1"), &p)
    );
}

#[test]
fn ipv6_lan_addresses_count_whole() {
    let a = source_of(&addr("/ip6/fd00:1:2:3::1/tcp/1"), &PeerId::random());
    let b = source_of(&addr("/ip6/fd00:1:2:3::2/tcp/1"), &PeerId::random());
    let c = source_of(&addr("/ip6/fe80::1/tcp/1"), &PeerId::random());
    let d = source_of(&addr("/ip6/fe80::2/tcp/1"), &PeerId::random());
    assert_ne!(a, b);
    assert_ne!(c, d);
}

#[test]
fn attached_links_share_one_account_whatever_their_peer() {
    let a = source_of(&"/memory/1".parse().unwrap(), &PeerId::random());
    let b = source_of(&"/memory/2".parse().unwrap(), &PeerId::random());
    assert_eq!(a, b);
}
