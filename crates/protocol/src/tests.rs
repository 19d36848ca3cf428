use crate::sim::{Faults, Sim, B, P};
use crate::*;

fn config() -> Config {
    Config::default()
}

fn lossy() -> Faults {
    Faults {
        drop_percent: 20,
        max_delay_ms: 20,
        channel_delay_ms: 2,
    }
}

#[test]
fn test_primary_releases_only_what_the_backup_acknowledged() {
    let mut p = Node::new(Role::Primary, 1, config(), 0);
    p.handle(0, Input::LogWritten { entries: 10 });

    let early = p.handle(
        1,
        Input::Message(Message::Ack {
            session: 1,
            received: 4,
            icount: 0,
            mtime: 0,
        }),
    );
    let beyond = p.handle(
        2,
        Input::Message(Message::Ack {
            session: 1,
            received: 99,
            icount: 0,
            mtime: 0,
        }),
    );

    assert!(early.contains(&Effect::Release { upto: 4 }));
    // An acknowledgement beyond what was written is capped.
    assert!(beyond.contains(&Effect::Release { upto: 10 }));
}

#[test]
fn test_ack_of_another_session_is_ignored() {
    let mut p = Node::new(Role::Primary, 1, config(), 0);
    p.handle(0, Input::LogWritten { entries: 10 });

    let effects = p.handle(
        1,
        Input::Message(Message::Ack {
            session: 2,
            received: 5,
            icount: 0,
            mtime: 0,
        }),
    );

    assert!(!effects.iter().any(|e| matches!(e, Effect::Release { .. })));
}

#[test]
fn test_backup_acknowledges_each_receipt() {
    let mut b = Node::new(Role::Backup, 1, config(), 0);

    let effects = b.handle(1, Input::LogReceived { entries: 7 });

    assert!(effects.contains(&Effect::Ack(Message::Ack {
        session: 1,
        received: 7,
        icount: 0,
        mtime: 0
    })));
}

#[test]
fn test_backup_reports_progress_of_a_tenth_of_the_lag_bound_without_new_log() {
    let mut b = Node::new(Role::Backup, 1, config(), 0);
    b.handle(1, Input::LogReceived { entries: 7 });
    let step = config().lag_bound_ticks / 10;

    let short = b.handle(
        2,
        Input::Executed {
            icount: 10,
            mtime: step - 1,
        },
    );
    let enough = b.handle(
        3,
        Input::Executed {
            icount: 20,
            mtime: step,
        },
    );

    assert!(!short.iter().any(|e| matches!(e, Effect::Ack(_))));
    assert!(enough.contains(&Effect::Ack(Message::Ack {
        session: 1,
        received: 7,
        icount: 20,
        mtime: step,
    })));
}

#[test]
fn test_silence_longer_than_the_timeout_leads_to_the_arbiter() {
    let mut b = Node::new(Role::Backup, 1, config(), 0);

    let mut quiet = Vec::new();
    for t in (10..=500).step_by(10) {
        quiet.extend(b.handle(t, Input::Tick));
    }
    let late = b.handle(501, Input::Tick);

    assert!(!quiet.iter().any(|e| matches!(e, Effect::TestAndSet { .. })));
    assert!(late.contains(&Effect::TestAndSet { epoch: 1 }));
}

#[test]
fn test_unreachable_arbiter_is_retried_and_nothing_goes_live() {
    let mut b = Node::new(Role::Backup, 1, config(), 0);
    b.handle(0, Input::ChannelLost);

    let answer = b.handle(
        5,
        Input::Arbiter(ArbiterAnswer::Unreachable {
            error: "down".into(),
        }),
    );
    let before = b.handle(104, Input::Tick);
    let retry = b.handle(105, Input::Tick);

    assert!(answer.is_empty());
    assert!(before.is_empty());
    assert_eq!(retry, vec![Effect::TestAndSet { epoch: 1 }]);
    assert_eq!(b.mode(), &Mode::Arbitrating { epoch: 1 });
}

#[test]
fn test_primary_that_wins_releases_everything_held() {
    let mut p = Node::new(Role::Primary, 1, config(), 0);
    p.handle(0, Input::LogWritten { entries: 10 });
    p.handle(1, Input::ChannelLost);

    let effects = p.handle(2, Input::Arbiter(ArbiterAnswer::Won));

    assert_eq!(
        effects,
        vec![Effect::GoLive { epoch: 1 }, Effect::Release { upto: 10 }]
    );
}

#[test]
fn test_loser_halts_with_the_holder_named() {
    let mut p = Node::new(Role::Primary, 1, config(), 0);
    p.handle(1, Input::ChannelLost);

    let effects = p.handle(
        2,
        Input::Arbiter(ArbiterAnswer::Lost {
            holder: "backup on hostb".into(),
        }),
    );

    assert!(
        matches!(&effects[..], [Effect::Halt { reason }] if reason.contains("backup on hostb"))
    );
}

#[test]
fn test_healthy_pair_over_a_lossy_network_never_fails_over() {
    for seed in 0..20 {
        let mut sim = Sim::new(seed, lossy(), config());

        sim.run(5_000);

        assert_eq!(sim.live(), Vec::<usize>::new(), "seed {seed}");
        assert_eq!(sim.mode(P), Mode::Paired, "seed {seed}");
        assert!(
            sim.violations.is_empty(),
            "seed {seed}: {:?}",
            sim.violations
        );
        assert!(sim.sides[P].released > 0, "seed {seed}: outputs flow");
    }
}

#[test]
fn test_primary_crash_makes_the_backup_go_live_without_losing_released_output() {
    for seed in 0..50 {
        let mut sim = Sim::new(seed, lossy(), config());
        sim.run(200 + seed * 7);
        let released = sim.sides[P].released;

        sim.crash(P);
        sim.run(300);

        assert_eq!(sim.live(), vec![B], "seed {seed}");
        // Everything the primary let out is in the log the backup received.
        assert!(released <= sim.received, "seed {seed}");
        assert!(
            sim.violations.is_empty(),
            "seed {seed}: {:?}",
            sim.violations
        );
    }
}

#[test]
fn test_silent_primary_death_is_detected_by_heartbeat_timeout() {
    let mut sim = Sim::new(1, Faults::default(), config());
    sim.run(500);

    // The primary's host vanishes without closing anything.
    sim.sides[P].alive = false;
    sim.partition();
    sim.run(config().failure_timeout_ms + 20);

    assert_eq!(sim.live(), vec![B]);
}

#[test]
fn test_backup_crash_makes_the_primary_go_alone_and_release_everything() {
    for seed in 0..50 {
        let mut sim = Sim::new(seed, lossy(), config());
        sim.run(300 + seed * 3);

        sim.crash(B);
        sim.run(300);

        assert_eq!(sim.live(), vec![P], "seed {seed}");
        assert_eq!(sim.sides[P].released, sim.written, "seed {seed}");
    }
}

#[test]
fn test_partition_with_arbiter_reachable_lets_exactly_one_side_live() {
    for seed in 0..100 {
        let mut sim = Sim::new(seed, lossy(), config());
        sim.run(100 + seed);

        sim.partition();
        sim.run(1_000);

        let live = sim.live();
        assert_eq!(live.len(), 1, "seed {seed}: live {live:?}");
        let other = 1 - live[0];
        assert!(
            matches!(sim.mode(other), Mode::Halted { .. }),
            "seed {seed}: the other side is {:?}",
            sim.mode(other)
        );
        assert!(
            sim.violations.is_empty(),
            "seed {seed}: {:?}",
            sim.violations
        );
    }
}

#[test]
fn test_nobody_goes_live_while_the_arbiter_is_unreachable() {
    let mut sim = Sim::new(3, lossy(), config());
    sim.run(200);
    sim.arbiter_reachable = [false, false];

    sim.partition();
    sim.run(2_000);
    let during = sim.live();
    sim.arbiter_reachable = [true, true];
    sim.run(500);

    assert_eq!(during, Vec::<usize>::new());
    assert_eq!(sim.live().len(), 1);
}

#[test]
fn test_side_cut_from_the_arbiter_never_goes_live() {
    for seed in 0..20 {
        let mut sim = Sim::new(seed, lossy(), config());
        sim.run(200);
        sim.arbiter_reachable = [true, false];

        sim.partition();
        sim.run(1_000);

        assert_eq!(sim.live(), vec![P], "seed {seed}");
        assert!(
            matches!(sim.mode(B), Mode::Arbitrating { .. }),
            "seed {seed}"
        );
    }
}

#[test]
fn test_lagging_backup_throttles_the_primary_until_it_catches_up() {
    let mut sim = Sim::new(5, Faults::default(), config());
    sim.speed = [10_000, 4_000];

    sim.run(1_000);
    let throttled = sim.sides[P].throttled;
    sim.speed = [10_000, 40_000];
    sim.run(1_000);

    assert!(throttled);
    assert!(!sim.sides[P].throttled);
}

#[test]
fn test_status_reports_lag_and_release() {
    let mut p = Node::new(Role::Primary, 1, config(), 0);
    p.handle(0, Input::LogWritten { entries: 10 });
    p.handle(
        0,
        Input::Executed {
            icount: 5,
            mtime: 5_000,
        },
    );
    p.handle(
        1,
        Input::Message(Message::Ack {
            session: 1,
            received: 6,
            icount: 1,
            mtime: 1_000,
        }),
    );

    let s = p.status();

    assert_eq!(
        (s.entries, s.acked, s.released, s.lag_ticks),
        (10, 6, 6, 4_000)
    );
}

#[test]
fn test_a_node_that_was_not_running_does_not_blame_its_peer() {
    let mut b = Node::new(Role::Backup, 1, config(), 0);
    b.handle(10, Input::Tick);

    // The process was stopped for two seconds; the first thing it does
    // after is a tick, before the peer's waiting heartbeat is read.
    let resumed = b.handle(2_010, Input::Tick);
    let heard = b.handle(
        2_011,
        Input::Message(Message::Heartbeat {
            session: 1,
            from: Role::Primary,
            epoch: 0,
            released: 0,
            received: 0,
            mtime: 0,
        }),
    );

    assert!(!resumed
        .iter()
        .any(|e| matches!(e, Effect::TestAndSet { .. })));
    assert!(!heard.iter().any(|e| matches!(e, Effect::TestAndSet { .. })));
    assert_eq!(b.mode(), &Mode::Paired);
}

/// The throttle's effects among those of `effects`.
fn throttles(effects: Vec<Effect>) -> Vec<Effect> {
    effects
        .into_iter()
        .filter(|e| matches!(e, Effect::Throttle(_)))
        .collect()
}

fn executed(node: &mut Node, now_ms: u64, mtime: u64) -> Vec<Effect> {
    throttles(node.handle(
        now_ms,
        Input::Executed {
            icount: mtime,
            mtime,
        },
    ))
}

fn backup_at(node: &mut Node, now_ms: u64, mtime: u64) -> Vec<Effect> {
    throttles(node.handle(
        now_ms,
        Input::Message(Message::Ack {
            session: 1,
            received: 0,
            icount: mtime,
            mtime,
        }),
    ))
}

#[test]
fn test_lag_leaves_out_the_primarys_own_pause_until_the_backup_passes_it() {
    let bound = config().lag_bound_ticks;
    let mut p = Node::new(Role::Primary, 1, config(), 0);
    executed(&mut p, 0, bound + bound / 5);
    backup_at(&mut p, 0, 0);
    assert!(p.status().throttled);

    // Paused for half a bound, which is not yet in the primary's position
    // (it has executed nothing since): nothing changes. The backup reaches
    // half a bound meanwhile.
    let effects = throttles(p.handle(50, Input::Paused { ticks: bound / 2 }));
    assert_eq!(effects, vec![]);
    let effects = backup_at(&mut p, 50, bound / 2);
    assert_eq!(effects, vec![Effect::Throttle(false)]);
    // The guest's clock jumped by the pause: the backup still has 0.7
    // bound of execution before the pause and a tenth of a bound after it.
    executed(&mut p, 51, bound + bound / 5 + bound / 2 + bound / 10);
    assert_eq!(p.status().lag_ticks, bound / 10 * 7 + bound / 10);
    assert!(!p.status().throttled);

    // Once past the pause, the jump is the backup's too.
    backup_at(&mut p, 60, bound + bound / 5 + bound / 2);
    assert_eq!(p.status().lag_ticks, bound / 10);
    assert_eq!(p.pauses.len(), 0);
}

#[test]
fn test_throttle_lasts_until_the_lag_is_three_quarters_of_the_bound() {
    let bound = config().lag_bound_ticks;
    let mut p = Node::new(Role::Primary, 1, config(), 0);

    let on = executed(&mut p, 0, 2 * bound);
    let still = backup_at(&mut p, 1, bound + bound / 5);
    let off = backup_at(&mut p, 2, bound + bound / 4);

    assert_eq!(
        (on, still, off),
        (
            vec![Effect::Throttle(true)],
            vec![],
            vec![Effect::Throttle(false)]
        )
    );
}

#[test]
fn test_backup_ignores_pauses_and_the_pause_list_stays_bounded() {
    let mut b = Node::new(Role::Backup, 1, config(), 0);
    assert_eq!(throttles(b.handle(0, Input::Paused { ticks: 5 })), vec![]);
    assert_eq!(b.pauses.len(), 0);

    let mut p = Node::new(Role::Primary, 1, config(), 0);
    for i in 0..(2 * super::MAX_PAUSES as u64) {
        executed(&mut p, i, 10 * i + 10);
        p.handle(i, Input::Paused { ticks: 1 });
        // Pauses with nothing executed between them merge.
        p.handle(i, Input::Paused { ticks: 1 });
    }
    assert_eq!(p.pauses.len(), super::MAX_PAUSES);
    assert!(p.pauses.iter().all(|&(_, ticks)| ticks == 2));
}

#[test]
fn test_a_resumed_pairing_claims_the_epoch_after_the_one_its_side_won() {
    let config = config();
    let mut p = Node::resume(Role::Primary, 7, 3, config, 0);

    let mut effects = Vec::new();
    for at in (10..=config.failure_timeout_ms + 10).step_by(10) {
        effects.extend(p.handle(at, Input::Tick));
    }

    assert!(
        effects.contains(&Effect::TestAndSet { epoch: 4 }),
        "{effects:?}"
    );
}

#[test]
fn test_a_heartbeat_of_an_earlier_pairing_is_no_sign_of_life() {
    let config = config();
    let mut p = Node::resume(Role::Primary, 7, 3, config, 0);
    let stale = |at: u64| {
        Input::Message(Message::Heartbeat {
            session: 7,
            from: Role::Backup,
            epoch: 0,
            released: 0,
            received: 0,
            mtime: at,
        })
    };

    // Heartbeats of the pairing before, every 10 ms, keep nothing alive.
    let mut effects = Vec::new();
    for at in (10..=config.failure_timeout_ms + 10).step_by(10) {
        effects.extend(p.handle(at, stale(at)));
        effects.extend(p.handle(at, Input::Tick));
    }

    assert!(
        effects.contains(&Effect::TestAndSet { epoch: 4 }),
        "{effects:?}"
    );
}
