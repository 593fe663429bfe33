//! Guards snapshot files: they round-trip, damage is detected and skipped in favour of an older
//! snapshot, pruning keeps the newest ones, and temporary or half-written files are never loaded.

use cairn_log::LogError;
use cairn_log::snapshot::{
    SnapshotMeta, list_snapshots, load_newest_snapshot, prune_snapshots, read_snapshot,
    snapshot_file_name, write_snapshot,
};
use cairn_log::storage::{CrashMode, FaultPlan, FaultStorage, FileStorage, MemStorage, Storage};
use cairn_types::Lsn;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn meta(lsn: u64) -> SnapshotMeta {
    let mut chain = [0u8; 16];
    chain[..8].copy_from_slice(&lsn.to_le_bytes());
    let mut state_hash = [0u8; 32];
    state_hash[..8].copy_from_slice(&(lsn * 31).to_le_bytes());
    SnapshotMeta {
        lsn: Lsn(lsn),
        timestamp_ms: 1_700_000_000_000 + lsn,
        chain,
        state_hash,
    }
}

/// A state with both compressible runs and noise.
fn state(lsn: u64, len: usize) -> Vec<u8> {
    let mut x = lsn | 1;
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if i % 3 == 0 {
                (x >> 32) as u8
            } else {
                (i / 64) as u8
            }
        })
        .collect()
}

fn write(storage: &dyn Storage, dir: &Path, lsn: u64) -> PathBuf {
    write_snapshot(storage, dir, &meta(lsn), &state(lsn, 10_000))
        .expect("write snapshot")
        .0
}

fn flip_byte(path: &Path, offset: usize) {
    let mut bytes = fs::read(path).expect("read");
    bytes[offset] ^= 0x10;
    fs::write(path, bytes).expect("write");
}

#[test]
fn a_snapshot_round_trips_its_meta_and_state() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("snapshots");
    for (lsn, len) in [(1u64, 0usize), (42, 1), (7_000, 300_000)] {
        let state = state(lsn, len);
        let (path, bytes) = write_snapshot(&FileStorage, &dir, &meta(lsn), &state).expect("write");
        assert_eq!(path, dir.join(snapshot_file_name(Lsn(lsn))));
        assert_eq!(fs::metadata(&path).expect("stat").len(), bytes);
        let loaded = read_snapshot(&FileStorage, &path).expect("read back");
        assert_eq!(loaded.meta, meta(lsn));
        assert_eq!(loaded.state, state);
        assert_eq!(loaded.path, path);
    }
    let newest = load_newest_snapshot(&FileStorage, &dir, None)
        .expect("load")
        .expect("some snapshot");
    assert_eq!(newest.meta.lsn, Lsn(7_000));
    assert_eq!(newest.state, state(7_000, 300_000));
    let bounded = load_newest_snapshot(&FileStorage, &dir, Some(Lsn(6_999)))
        .expect("load")
        .expect("some");
    assert_eq!(bounded.meta.lsn, Lsn(42), "lsn_max bounds the choice");
}

#[test]
fn no_directory_or_no_snapshot_loads_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("absent");
    assert!(
        load_newest_snapshot(&FileStorage, &dir, None)
            .expect("load")
            .is_none()
    );
    fs::create_dir_all(&dir).expect("mkdir");
    fs::write(dir.join("notes.txt"), b"not a snapshot").expect("write");
    assert!(
        load_newest_snapshot(&FileStorage, &dir, None)
            .expect("load")
            .is_none()
    );
}

#[test]
fn a_flipped_byte_in_the_newest_snapshot_falls_back_to_the_older_one() {
    // Magic, LSN, chain, state hash, lengths, body checksum, header CRC, first and last body byte.
    for offset in [0usize, 17, 40, 60, 85, 90, 100, 125, 128, usize::MAX] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("snapshots");
        write(&FileStorage, &dir, 100);
        let newest = write(&FileStorage, &dir, 200);
        let len = fs::read(&newest).expect("read").len();
        let offset = offset.min(len - 1);
        flip_byte(&newest, offset);

        assert!(
            read_snapshot(&FileStorage, &newest).is_err(),
            "damage at byte {offset} unseen"
        );
        let loaded = load_newest_snapshot(&FileStorage, &dir, None)
            .expect("load")
            .expect("the older one");
        assert_eq!(loaded.meta, meta(100), "damage at byte {offset}");
        assert_eq!(loaded.state, state(100, 10_000));
    }
}

#[test]
fn a_truncated_or_mislabelled_snapshot_is_skipped() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("snapshots");
    write(&FileStorage, &dir, 100);
    let newest = write(&FileStorage, &dir, 200);
    let bytes = fs::read(&newest).expect("read");
    fs::write(&newest, &bytes[..bytes.len() - 1]).expect("truncate");
    assert!(read_snapshot(&FileStorage, &newest).is_err());
    fs::write(&newest, &bytes[..100]).expect("truncate into the header");
    assert!(read_snapshot(&FileStorage, &newest).is_err());
    // An intact snapshot under another LSN's name is not trusted either.
    fs::write(&newest, &bytes).expect("restore");
    fs::rename(&newest, dir.join(snapshot_file_name(Lsn(300)))).expect("rename");
    let loaded = load_newest_snapshot(&FileStorage, &dir, None)
        .expect("load")
        .expect("some");
    assert_eq!(
        loaded.meta,
        meta(100),
        "the snapshot named 300 but holding 200 is skipped"
    );
}

#[test]
fn prune_keeps_the_newest_k_snapshots() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("snapshots");
    for lsn in [50u64, 10, 40, 20, 60, 30] {
        write(&FileStorage, &dir, lsn);
    }
    assert_eq!(prune_snapshots(&FileStorage, &dir, 3).expect("prune"), 3);
    let kept: Vec<Lsn> = list_snapshots(&FileStorage, &dir)
        .expect("list")
        .into_iter()
        .map(|(lsn, _)| lsn)
        .collect();
    assert_eq!(kept, vec![Lsn(60), Lsn(50), Lsn(40)]);
    assert_eq!(
        prune_snapshots(&FileStorage, &dir, 3).expect("prune"),
        0,
        "nothing more to remove"
    );
    // Keeping zero would leave recovery nothing: at least one is always kept.
    assert_eq!(prune_snapshots(&FileStorage, &dir, 0).expect("prune"), 2);
    let loaded = load_newest_snapshot(&FileStorage, &dir, None)
        .expect("load")
        .expect("one is left");
    assert_eq!(loaded.meta.lsn, Lsn(60));
}

#[test]
fn a_leftover_tmp_file_is_ignored_and_replaced() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("snapshots");
    write(&FileStorage, &dir, 100);
    // A crash during a later snapshot left its temporary file behind, newer and half-written.
    let mut tmp_name = dir.join(snapshot_file_name(Lsn(200))).into_os_string();
    tmp_name.push(".tmp");
    let leftover = PathBuf::from(tmp_name);
    let full = fs::read(write(&FileStorage, &tmp.path().join("elsewhere"), 200)).expect("read");
    fs::write(&leftover, &full[..full.len() / 2]).expect("leftover");

    let listed: Vec<Lsn> = list_snapshots(&FileStorage, &dir)
        .expect("list")
        .into_iter()
        .map(|(lsn, _)| lsn)
        .collect();
    assert_eq!(listed, vec![Lsn(100)], "a .tmp file is not a snapshot");
    let loaded = load_newest_snapshot(&FileStorage, &dir, None)
        .expect("load")
        .expect("some");
    assert_eq!(loaded.meta.lsn, Lsn(100));
    assert_eq!(
        prune_snapshots(&FileStorage, &dir, 1).expect("prune"),
        0,
        "pruning ignores it too"
    );

    // Writing that snapshot again replaces the leftover.
    write(&FileStorage, &dir, 200);
    assert!(!leftover.exists());
    assert_eq!(
        load_newest_snapshot(&FileStorage, &dir, None)
            .expect("load")
            .expect("some")
            .meta
            .lsn,
        Lsn(200)
    );
}

#[test]
fn a_written_snapshot_survives_a_power_cut_and_a_failed_write_leaves_the_old_set() {
    let mem = MemStorage::new();
    let dir = Path::new("/cairn/snapshots");
    write(&mem, dir, 100);
    mem.crash(CrashMode::DropUnsynced);
    assert_eq!(
        load_newest_snapshot(&mem, dir, None)
            .expect("load")
            .expect("durable")
            .meta,
        meta(100)
    );

    // The disk fails the fsync of the next snapshot's temporary file, then the power goes.
    let faulty = FaultStorage::new(Arc::new(mem.clone()));
    faulty.set_plan(FaultPlan {
        fail_sync_from: Some(1),
        ..FaultPlan::default()
    });
    let failed = write_snapshot(&faulty, dir, &meta(200), &state(200, 10_000));
    assert!(matches!(failed, Err(LogError::Io { .. })), "got {failed:?}");
    mem.crash(CrashMode::Torn { seed: 3 });
    let listed: Vec<Lsn> = list_snapshots(&mem, dir)
        .expect("list")
        .into_iter()
        .map(|(lsn, _)| lsn)
        .collect();
    assert_eq!(
        listed,
        vec![Lsn(100)],
        "the failed snapshot never became visible"
    );
    assert_eq!(
        load_newest_snapshot(&mem, dir, None)
            .expect("load")
            .expect("the old one")
            .meta,
        meta(100)
    );
}
