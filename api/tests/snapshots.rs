//! Policy snapshots: a restart resumes from the latest snapshot and replays only the tracked
//! entries after it, and reaches exactly the state a fold of the whole log from zero gives;
//! a damaged or foreign snapshot is never used.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use govern_store::{LogConfig, Storage as _};
use support::users::{act, admin, new_wallet, transfer};

/// (size, state root) of the node's policy, and the state root of a fold from zero.
fn roots(services: &govern_api::Services<govern_store::MemoryStorage>) -> (u64, String, String) {
    let (size, state) = services.policy.state();
    let mut from_zero = govern_projections::state::State::new();
    let latest = services
        .log
        .fold_tracked(&mut |e, i| from_zero.apply(&e, i.0))
        .unwrap();
    assert_eq!(size, latest.size, "the policy is at the log's size");
    (
        size.0,
        state.root().unwrap().to_hex(),
        from_zero.root().unwrap().to_hex(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_from_the_snapshot_and_reaches_the_root_of_a_replay_from_zero() {
    let node = support::boot_with(|c| LogConfig {
        snapshot_every: 8,
        ..c
    })
    .await;
    let mut user = admin(&node).await;
    let wallet = new_wallet(&node, &mut user).await;
    for _ in 0..6 {
        let r = act(
            &node,
            &mut user,
            "transfer.requested",
            &format!("/v1/wallets/{wallet}/transfers"),
            &transfer(),
        )
        .await;
        assert_eq!(r.0.as_u16(), 201, "{}", r.1);
    }
    let (size, root, from_zero) = roots(&node.services);
    assert_eq!(root, from_zero);
    assert!(size > 8, "{size}");

    // Restart: the snapshot (of a size a multiple of 8 was crossed at) is used, and the
    // state after the boot's new attestations equals a fold of the whole log.
    let (services, dir, _tmp, storage) = node.restart().await;
    let restored = services
        .log
        .restored_snapshot()
        .expect("a snapshot was used");
    assert!(restored.0 >= 8 && restored.0 <= size, "{restored}");
    let (size2, root2, from_zero2) = roots(&services);
    assert!(size2 > size);
    assert_eq!(root2, from_zero2);

    // A damaged snapshot is refused, and the restart replays from zero to the same state.
    drop(services);
    let storage = storage.power_fail();
    {
        let mut value = storage
            .get(b"m/snapshot")
            .unwrap()
            .expect("a snapshot is stored");
        let last = value.len() - 2;
        value[last] ^= 0x01;
        storage.corrupt(b"m/snapshot", value);
    }
    let services = dir
        .boot_on(
            storage.clone(),
            LogConfig::new(dir.origin()),
            true,
            &govern_api::Attestor::Simulated {
                executable: support::exe(),
            },
            std::sync::Arc::new(govern_store::SystemClock),
        )
        .await
        .unwrap();
    assert_eq!(
        services.log.restored_snapshot(),
        None,
        "a damaged snapshot is not used"
    );
    let (_, root3, from_zero3) = roots(&services);
    assert_eq!(root3, from_zero3);
}
