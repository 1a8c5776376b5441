//! The gate's bookkeeping, without a network: per-source pending and
//! established limits, the inbound reserve, the rate, and release of
//! every slot on every way a connection can end.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

fn addr(s: &str) -> Multiaddr {
    s.parse().unwrap()
}

const LOCAL: &str = "/ip4/0.0.0.0/tcp/4001";

fn gate(limits: Limits) -> ConnectionGate {
    ConnectionGate::new(limits, HashSet::new())
}

#[test]
fn sources_group_by_prefix_and_loopback_is_unlimited() {
    let unlimited = Limits::relay().unlimited_sources;
    let of = |s: &str| GateSource::of(&addr(s), &unlimited);
    assert_eq!(of("/ip4/8.8.8.1/tcp/1"), of("/ip4/8.8.8.200/tcp/9"));
    assert_ne!(of("/ip4/8.8.8.1/tcp/1"), of("/ip4/8.8.9.1/tcp/1"));
    assert_ne!(of("/ip4/192.168.1.2/tcp/1"), of("/ip4/192.168.1.3/tcp/1"));
    assert_eq!(
        of("/ip6/2a00:1:2:3400::1/tcp/1"),
        of("/ip6/2a00:1:2:34ff:ffff::9/tcp/1")
    );
    assert_ne!(
        of("/ip6/2a00:1:2:3400::1/tcp/1"),
        of("/ip6/2a00:1:2:3500::1/tcp/1")
    );
    assert_eq!(of("/ip6/::ffff:8.8.8.1/tcp/1"), of("/ip4/8.8.8.7/tcp/1"));
    assert_eq!(of("/ip4/127.0.0.1/tcp/1"), GateSource::Unlimited);
    assert_eq!(of("/ip6/::1/tcp/1"), GateSource::Unlimited);
    // Other loopback addresses are not this machine's PT: limited.
    assert_eq!(of("/ip4/127.66.0.1/tcp/1"), of("/ip4/127.66.0.2/tcp/1"));
    assert_ne!(of("/ip4/127.66.0.1/tcp/1"), GateSource::Unlimited);
}

#[test]
fn one_source_gets_its_pending_share_and_no_more() {
    let limits = Limits {
        max_pending_per_source: 3,
        source_burst: 100,
        ..Limits::relay()
    };
    let mut g = gate(limits);
    for _ in 0..3 {
        g.handle_pending_inbound_connection(
            ConnectionId::new_unchecked(0),
            &addr(LOCAL),
            &addr("/ip4/9.9.9.1/tcp/5"),
        )
        .unwrap();
    }
    // The IDs above collide on purpose: use fresh ones from here.
    let mut g = gate(Limits {
        max_pending_per_source: 3,
        source_burst: 100,
        ..Limits::relay()
    });
    let ids: Vec<ConnectionId> = (0..5).map(ConnectionId::new_unchecked).collect();
    for id in &ids[..3] {
        g.handle_pending_inbound_connection(*id, &addr(LOCAL), &addr("/ip4/9.9.9.1/tcp/5"))
            .unwrap();
    }
    assert!(
        g.handle_pending_inbound_connection(ids[3], &addr(LOCAL), &addr("/ip4/9.9.9.77/tcp/5"))
            .is_err()
    );
    assert_eq!(g.refusals().pending_per_source, 1);
    // Another source is unaffected.
    g.handle_pending_inbound_connection(ids[4], &addr(LOCAL), &addr("/ip4/9.9.10.1/tcp/5"))
        .unwrap();
    // A handshake that fails frees its slot.
    g.release_pending(ids[0]);
    g.handle_pending_inbound_connection(
        ConnectionId::new_unchecked(99),
        &addr(LOCAL),
        &addr("/ip4/9.9.9.1/tcp/5"),
    )
    .unwrap();
}

#[test]
fn the_rate_limit_refuses_a_burst_beyond_its_size() {
    let mut g = gate(Limits {
        source_burst: 4,
        source_rate_per_sec: 1,
        max_pending_per_source: 100,
        ..Limits::relay()
    });
    let mut admitted = 0;
    for i in 0..20 {
        let id = ConnectionId::new_unchecked(i);
        if g.handle_pending_inbound_connection(id, &addr(LOCAL), &addr("/ip4/9.9.9.1/tcp/5"))
            .is_ok()
        {
            admitted += 1;
            g.release_pending(id);
        }
    }
    assert_eq!(admitted, 4, "a burst of 4, then about one a second");
    assert_eq!(g.refusals().rate, 16);
}

#[test]
fn quic_and_tcp_have_separate_pending_budgets() {
    let mut g = gate(Limits {
        max_pending_incoming: 2,
        ..Limits::relay()
    });
    let quic = addr("/ip4/0.0.0.0/udp/4001/quic-v1");
    for (i, src) in ["/ip4/1.1.1.1/udp/5", "/ip4/2.2.2.2/udp/5"]
        .iter()
        .enumerate()
    {
        g.handle_pending_inbound_connection(ConnectionId::new_unchecked(i), &quic, &addr(src))
            .unwrap();
    }
    assert!(
        g.handle_pending_inbound_connection(
            ConnectionId::new_unchecked(7),
            &quic,
            &addr("/ip4/3.3.3.3/udp/5")
        )
        .is_err(),
        "QUIC's budget is full"
    );
    g.handle_pending_inbound_connection(
        ConnectionId::new_unchecked(8),
        &addr(LOCAL),
        &addr("/ip4/3.3.3.3/tcp/5"),
    )
    .expect("a spoofed QUIC flood does not lock TCP out");
}

#[test]
fn established_inbound_is_capped_per_source_and_leaves_the_reserve() {
    let trusted = PeerId::random();
    let limits = Limits {
        max_connections: 10,
        reserved_outbound: 4,
        max_per_source: 2,
        ..Limits::relay()
    };
    let mut g = ConnectionGate::new(limits, [trusted].into_iter().collect());
    let mut next = 0usize;
    let mut admit = |g: &mut ConnectionGate, peer: PeerId, src: &str| {
        next += 1;
        let id = ConnectionId::new_unchecked(next);
        g.handle_established_inbound_connection(id, peer, &addr(LOCAL), &addr(src))
            .map(|_| id)
    };
    let a = admit(&mut g, PeerId::random(), "/ip4/5.5.5.1/tcp/1").unwrap();
    admit(&mut g, PeerId::random(), "/ip4/5.5.5.2/tcp/1").unwrap();
    assert!(admit(&mut g, PeerId::random(), "/ip4/5.5.5.3/tcp/1").is_err());
    assert_eq!(g.refusals().per_source, 1);
    for i in 0..4 {
        admit(&mut g, PeerId::random(), &format!("/ip4/6.6.{i}.1/tcp/1")).unwrap();
    }
    // 6 inbound = 10 − 4 reserved. A newcomer displaces the newest
    // connection of the source holding the most (5.5.5.0/24, two)…
    let newcomer = admit(&mut g, PeerId::random(), "/ip4/7.7.7.7/tcp/1").expect("room is made");
    assert!(
        g.to_close.is_empty(),
        "nobody is closed before the newcomer is in"
    );
    g.carry_out_eviction(newcomer);
    assert_eq!(g.refusals().evicted, 1);
    let Some((closing, _)) = g.to_close.front().copied() else {
        panic!("a connection is queued to close");
    };
    // …and once every source holds one, newcomers are refused; trusted
    // peers are not.
    assert!(admit(&mut g, PeerId::random(), "/ip4/8.8.8.8/tcp/1").is_err());
    assert_eq!(g.refusals().inbound_full, 1);
    admit(&mut g, trusted, "/ip4/5.5.5.9/tcp/1").expect("trusted peers bypass");
    // A closed connection frees both its source slot and its inbound slot.
    g.release_established(closing);
    g.release_established(a);
    admit(&mut g, PeerId::random(), "/ip4/5.5.5.4/tcp/1").unwrap();
}

#[test]
fn a_wider_network_gets_a_bounded_number_of_shares() {
    let mut g = gate(Limits {
        max_per_source: 2,
        ..Limits::relay()
    });
    let mut admitted = 0;
    // Ten /24s of one /16, two connections each: 20 attempts.
    for net in 0..10u32 {
        for host in 0..2u32 {
            let id = ConnectionId::new_unchecked((net * 2 + host) as usize);
            let src = format!("/ip4/44.1.{net}.{}/tcp/1", host + 1);
            if g.handle_established_inbound_connection(
                id,
                PeerId::random(),
                &addr(LOCAL),
                &addr(&src),
            )
            .is_ok()
            {
                admitted += 1;
            }
        }
    }
    assert_eq!(
        admitted,
        2 * WIDE_FACTOR as usize,
        "a /16 holds {WIDE_FACTOR} shares"
    );
    // The same holds for IPv6 /56s inside one /48.
    let mut g = gate(Limits {
        max_per_source: 2,
        ..Limits::relay()
    });
    let admitted = (0..20u32)
        .filter(|i| {
            let src = format!("/ip6/2a00:1:2:{:x}00::1/tcp/1", i);
            g.handle_established_inbound_connection(
                ConnectionId::new_unchecked(*i as usize),
                PeerId::random(),
                &addr(LOCAL),
                &addr(&src),
            )
            .is_ok()
        })
        .count();
    assert_eq!(admitted, 2 * WIDE_FACTOR as usize);
}

#[test]
fn inbound_circuits_count_against_their_relay_not_the_free_peer_id() {
    // What libp2p reports for an inbound relayed connection: the local
    // address names the relay, the remote one only the dialler.
    let relay = PeerId::random();
    let local = addr(&format!("/ip4/9.9.9.9/tcp/4001/p2p/{relay}/p2p-circuit"));
    let unlimited = Limits::client().unlimited_sources;
    let a = GateSource::of_connection(
        &local,
        &addr(&format!("/p2p/{}", PeerId::random())),
        &unlimited,
    );
    let b = GateSource::of_connection(
        &local,
        &addr(&format!("/p2p/{}", PeerId::random())),
        &unlimited,
    );
    assert_eq!(a, GateSource::Circuit(Some(relay)));
    assert_eq!(a, b, "fresh PeerIds behind one relay are one source");
}

#[test]
fn forged_quic_handshakes_do_not_use_up_a_networks_tcp_share() {
    let mut g = gate(Limits {
        max_pending_per_source: 2,
        ..Limits::relay()
    });
    let quic = addr("/ip4/0.0.0.0/udp/4001/quic-v1");
    for i in 0..2 {
        g.handle_pending_inbound_connection(
            ConnectionId::new_unchecked(i),
            &quic,
            &addr("/ip4/5.5.5.5/udp/9"),
        )
        .unwrap();
    }
    g.handle_pending_inbound_connection(
        ConnectionId::new_unchecked(9),
        &addr(LOCAL),
        &addr("/ip4/5.5.5.6/tcp/9"),
    )
    .expect("the victim's network still connects over TCP");
}

#[test]
fn an_eviction_waits_for_its_newcomer_and_is_bounded() {
    let limits = Limits {
        max_connections: 12,
        reserved_outbound: 2,
        max_per_source: 10,
        ..Limits::relay()
    };
    let mut g = ConnectionGate::new(limits, HashSet::new());
    // One source holds all ten inbound slots.
    for i in 0..10 {
        g.handle_established_inbound_connection(
            ConnectionId::new_unchecked(i),
            PeerId::random(),
            &addr(LOCAL),
            &addr("/ip4/5.5.5.1/tcp/1"),
        )
        .unwrap();
    }
    // A newcomer another behaviour then refuses: nobody is closed, and
    // the victim counts again.
    let refused = ConnectionId::new_unchecked(100);
    g.handle_established_inbound_connection(
        refused,
        PeerId::random(),
        &addr(LOCAL),
        &addr("/ip4/9.0.0.1/tcp/1"),
    )
    .unwrap();
    g.release_established(refused);
    assert!(g.to_close.is_empty() && g.evicting.is_empty());
    // Newcomers from many networks: at most MAX_EVICTING evictions run at
    // once (closes a peer could stall), then newcomers are refused.
    let mut admitted = 0;
    for i in 0..20u32 {
        let id = ConnectionId::new_unchecked(200 + i as usize);
        if g.handle_established_inbound_connection(
            id,
            PeerId::random(),
            &addr(LOCAL),
            &addr(&format!("/ip4/9.{i}.0.1/tcp/1")),
        )
        .is_ok()
        {
            admitted += 1;
            g.carry_out_eviction(id);
        }
    }
    // The cancelled eviction gave its token back.
    assert_eq!(admitted, MAX_EVICTING);
    assert_eq!(g.refusals().evicted, admitted as u64);
    // Victims whose close never completes: after the grace they count as
    // inbound again, and no eviction happens while inbound is over its cap
    // by MAX_EVICTING, so stalled closes cannot add up.
    let later = Instant::now() + EVICTION_GRACE * 2;
    assert_eq!(g.live_evictions(later), 0);
    assert!(
        !g.evict_for(
            ConnectionId::new_unchecked(999),
            &GateSource::V4Net([9, 9, 9]),
            10,
            later
        ),
        "no eviction while inbound is over its cap"
    );
}
