//! Guards the recovery scan's verdicts on real files: damage to history is `Corruption` naming the
//! file, byte offset and LSN (and recovery changes nothing), while a torn tail of the newest
//! segment is cut and the log goes on at the next LSN.

use cairn_log::record::{RECORD_HEADER_BYTES, decode};
use cairn_log::segment::{SEGMENT_HEADER_BYTES, SegmentFile, list_segments, segment_file_name};
use cairn_log::storage::{FileStorage, Storage};
use cairn_log::{
    Corruption, CorruptionKind, Entry, LogError, LogOptions, LogWriter, Record, ScanOutcome,
    ScanStart, open_log, scan,
};
use cairn_types::Lsn;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const SMALL_SEGMENTS: LogOptions = LogOptions {
    segment_bytes_max: 64 * 1024,
};
const RECORDS: usize = 300;
const BATCH_RECORDS: usize = 10;

fn payload_of(index: usize) -> Vec<u8> {
    let len = 700 + (index * 37) % 400;
    (0..len).map(|i| (i * 7 + index * 13) as u8).collect()
}

fn storage() -> Arc<dyn Storage> {
    Arc::new(FileStorage)
}

fn open(dir: &Path, start: ScanStart) -> Result<(LogWriter, ScanOutcome, Vec<Record>), LogError> {
    let mut records = Vec::new();
    let (writer, outcome) = open_log(storage(), dir, SMALL_SEGMENTS, start, &mut |view| {
        records.push(view.to_record());
        Ok(())
    })?;
    Ok((writer, outcome, records))
}

fn scan_from(dir: &Path, start: ScanStart) -> Result<(ScanOutcome, Vec<Record>), LogError> {
    let mut records = Vec::new();
    let outcome = scan::scan(
        &FileStorage,
        dir,
        start,
        &mut |view| {
            records.push(view.to_record());
            Ok(())
        },
        &mut |_| {},
    )?;
    Ok((outcome, records))
}

fn append_synced(writer: &mut LogWriter, from: usize, count: usize) {
    for batch_start in (from..from + count).step_by(BATCH_RECORDS) {
        let payloads: Vec<Vec<u8>> = (batch_start..(batch_start + BATCH_RECORDS).min(from + count))
            .map(payload_of)
            .collect();
        let entries: Vec<Entry<'_>> = payloads
            .iter()
            .map(|payload| Entry {
                timestamp_ms: 1_000,
                record_type: 1,
                payload,
            })
            .collect();
        writer.append(&entries).expect("append");
        writer.sync().expect("sync");
    }
}

/// A log of `RECORDS` records in several segments, written in synced batches.
fn build_log() -> (tempfile::TempDir, PathBuf, Vec<Record>) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("log");
    let (mut writer, _, _) = open(&dir, ScanStart::ZERO).expect("a new log opens");
    append_synced(&mut writer, 0, RECORDS);
    drop(writer);
    let (_, records) = scan_from(&dir, ScanStart::ZERO).expect("the new log scans clean");
    assert_eq!(records.len(), RECORDS);
    assert!(segments(&dir).len() >= 4, "the test needs several segments");
    (tmp, dir, records)
}

fn segments(dir: &Path) -> Vec<SegmentFile> {
    list_segments(&FileStorage, dir).expect("list segments")
}

/// One record's place in a segment file.
#[derive(Clone, Copy, Debug)]
struct Placed {
    offset: u64,
    len: usize,
    lsn: Lsn,
    synced_lsn: Lsn,
}

fn placed_records(path: &Path) -> Vec<Placed> {
    let bytes = fs::read(path).expect("read segment");
    let mut at = SEGMENT_HEADER_BYTES as usize;
    let mut placed = Vec::new();
    while at < bytes.len() {
        let (view, len) = decode(&bytes[at..]).expect("an intact record");
        placed.push(Placed {
            offset: at as u64,
            len,
            lsn: view.lsn,
            synced_lsn: view.synced_lsn,
        });
        at += len;
    }
    placed
}

fn flip_byte(path: &Path, offset: u64, mask: u8) {
    let mut bytes = fs::read(path).expect("read");
    bytes[usize::try_from(offset).expect("small")] ^= mask;
    fs::write(path, bytes).expect("write");
}

fn snapshot_of_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = fs::read_dir(dir)
        .expect("read dir")
        .map(|entry| {
            let entry = entry.expect("entry");
            (
                entry.file_name().to_string_lossy().into_owned(),
                fs::read(entry.path()).expect("read"),
            )
        })
        .collect();
    files.sort();
    files
}

fn expect_corruption(result: Result<(ScanOutcome, Vec<Record>), LogError>) -> Corruption {
    match result {
        Err(LogError::Corruption(corruption)) => corruption,
        Err(other) => panic!("expected corruption, got error {other}"),
        Ok((outcome, _)) => panic!("expected corruption, the scan passed: {outcome:?}"),
    }
}

/// Recovery refuses the damaged log with the scan's verdict, and leaves every byte as it was.
fn assert_open_refuses_and_changes_nothing(dir: &Path, start: ScanStart, expected: &Corruption) {
    let before = snapshot_of_files(dir);
    match open(dir, start) {
        Err(LogError::Corruption(found)) => assert_eq!(&found, expected),
        Err(other) => panic!("expected corruption, got {other}"),
        Ok(_) => panic!("recovery accepted a corrupt log"),
    }
    assert_eq!(
        snapshot_of_files(dir),
        before,
        "a refused recovery must not touch the files"
    );
}

/// The middle record of an old (neither first nor newest) segment.
fn old_segment_victim(dir: &Path) -> (SegmentFile, Placed) {
    let all = segments(dir);
    let segment = all[1].clone();
    let placed = placed_records(&segment.path);
    let victim = placed[placed.len() / 2];
    (segment, victim)
}

#[test]
fn a_flipped_payload_byte_in_an_old_segment_names_the_file_the_record_offset_and_its_lsn() {
    let (_tmp, dir, _) = build_log();
    let (segment, victim) = old_segment_victim(&dir);
    flip_byte(
        &segment.path,
        victim.offset + RECORD_HEADER_BYTES as u64 + 5,
        0x20,
    );
    let corruption = expect_corruption(scan_from(&dir, ScanStart::ZERO));
    let expected = Corruption {
        path: segment.path.clone(),
        offset: victim.offset,
        lsn: victim.lsn,
        kind: CorruptionKind::BadChecksum,
    };
    assert_eq!(corruption, expected);
    assert!(
        corruption
            .to_string()
            .contains(&format!("byte offset {}", victim.offset))
    );
    assert_open_refuses_and_changes_nothing(&dir, ScanStart::ZERO, &expected);
}

#[test]
fn a_flipped_length_byte_in_an_old_segment_names_the_file_the_record_offset_and_its_lsn() {
    // The low byte makes the length plausible but wrong; the high byte makes it impossible.
    for (byte, mask, kinds) in [
        (
            0u64,
            0x01u8,
            &[
                CorruptionKind::BadChecksum,
                CorruptionKind::TruncatedSegment,
            ][..],
        ),
        (3, 0x40, &[CorruptionKind::BadLength][..]),
    ] {
        let (_tmp, dir, _) = build_log();
        let (segment, victim) = old_segment_victim(&dir);
        flip_byte(&segment.path, victim.offset + byte, mask);
        let corruption = expect_corruption(scan_from(&dir, ScanStart::ZERO));
        assert_eq!(corruption.path, segment.path);
        assert_eq!(corruption.offset, victim.offset, "length byte {byte}");
        assert_eq!(corruption.lsn, victim.lsn);
        assert!(
            kinds.contains(&corruption.kind),
            "length byte {byte}: {:?}",
            corruption.kind
        );
        assert_open_refuses_and_changes_nothing(&dir, ScanStart::ZERO, &corruption);
    }
}

#[test]
fn a_flipped_header_byte_in_an_old_segment_is_corruption_at_offset_zero() {
    for byte in [0u64, 17, 30, 61] {
        let (_tmp, dir, _) = build_log();
        let segment = segments(&dir)[1].clone();
        flip_byte(&segment.path, byte, 0x04);
        let corruption = expect_corruption(scan_from(&dir, ScanStart::ZERO));
        let expected = Corruption {
            path: segment.path.clone(),
            offset: 0,
            lsn: segment.first_lsn,
            kind: CorruptionKind::BadSegmentHeader,
        };
        assert_eq!(corruption, expected, "header byte {byte}");
        assert_open_refuses_and_changes_nothing(&dir, ScanStart::ZERO, &expected);
    }
}

#[test]
fn an_old_segment_cut_short_is_corruption_not_a_torn_tail() {
    let (_tmp, dir, _) = build_log();
    let segment = segments(&dir)[1].clone();
    let last = *placed_records(&segment.path).last().expect("records");
    let file = fs::OpenOptions::new()
        .write(true)
        .open(&segment.path)
        .expect("open");
    file.set_len(last.offset + 20).expect("truncate");
    drop(file);
    let corruption = expect_corruption(scan_from(&dir, ScanStart::ZERO));
    assert_eq!(
        corruption,
        Corruption {
            path: segment.path,
            offset: last.offset,
            lsn: last.lsn,
            kind: CorruptionKind::TruncatedSegment
        }
    );
}

#[test]
fn a_missing_middle_segment_is_a_segment_gap() {
    let (_tmp, dir, _) = build_log();
    let all = segments(&dir);
    fs::remove_file(&all[1].path).expect("remove");
    let corruption = expect_corruption(scan_from(&dir, ScanStart::ZERO));
    assert_eq!(corruption.path, all[2].path);
    assert_eq!(
        corruption.kind,
        CorruptionKind::SegmentGap {
            expected: all[1].first_lsn
        }
    );
}

#[test]
fn newest_segment_damage_before_a_record_proving_it_durable_is_corruption_not_a_torn_tail() {
    let (_tmp, dir, _) = build_log();
    let newest = segments(&dir).last().expect("segments").clone();
    let placed = placed_records(&newest.path);
    // A record that a later record of the same segment says was durable before it was written.
    let victim = *placed
        .iter()
        .find(|p| {
            placed
                .iter()
                .any(|later| later.lsn > p.lsn && later.synced_lsn >= p.lsn)
        })
        .expect("the newest segment holds more than one synced batch");
    assert!(victim.lsn < placed.last().expect("records").lsn);
    flip_byte(
        &newest.path,
        victim.offset + RECORD_HEADER_BYTES as u64 + 100,
        0x01,
    );
    let corruption = expect_corruption(scan_from(&dir, ScanStart::ZERO));
    let expected = Corruption {
        path: newest.path.clone(),
        offset: victim.offset,
        lsn: victim.lsn,
        kind: CorruptionKind::BadChecksum,
    };
    assert_eq!(corruption, expected);
    assert_open_refuses_and_changes_nothing(&dir, ScanStart::ZERO, &expected);
}

#[test]
fn damage_to_the_last_record_with_nothing_proving_it_durable_is_a_torn_tail() {
    let (_tmp, dir, records) = build_log();
    let newest = segments(&dir).last().expect("segments").clone();
    let last = *placed_records(&newest.path).last().expect("records");
    let file_len = fs::metadata(&newest.path).expect("stat").len();
    flip_byte(&newest.path, last.offset + RECORD_HEADER_BYTES as u64, 0x80);
    let (writer, outcome, _) = open(&dir, ScanStart::ZERO).expect("a torn tail is recoverable");
    let torn = outcome.torn_tail.expect("reported");
    assert_eq!(
        (torn.path, torn.offset, torn.bytes_dropped),
        (newest.path.clone(), last.offset, file_len - last.offset)
    );
    assert_eq!(writer.last_lsn(), Lsn(records.len() as u64 - 1));
}

/// Recovery reported `torn` at `offset` of the newest segment, cut it, and the log goes on.
fn assert_cut_and_continues(
    dir: &Path,
    newest: &Path,
    offset: u64,
    bytes_dropped: u64,
    last_lsn: Lsn,
) {
    let (mut writer, outcome, records) =
        open(dir, ScanStart::ZERO).expect("a torn tail is recoverable");
    let torn = outcome
        .torn_tail
        .clone()
        .expect("the torn tail is reported");
    assert_eq!(torn.path, newest);
    assert_eq!(torn.offset, offset);
    assert_eq!(torn.bytes_dropped, bytes_dropped);
    assert!(!torn.whole_segment);
    assert_eq!(outcome.last_lsn, last_lsn);
    assert_eq!(records.len() as u64, last_lsn.0);
    assert_eq!(
        fs::metadata(newest).expect("stat").len(),
        offset,
        "the file is cut at the torn tail"
    );

    append_synced(&mut writer, usize::try_from(last_lsn.0).expect("small"), 25);
    drop(writer);
    let (outcome, records) = scan_from(dir, ScanStart::ZERO).expect("the continued log verifies");
    assert!(outcome.torn_tail.is_none());
    assert_eq!(outcome.last_lsn, Lsn(last_lsn.0 + 25));
    for (index, record) in records.iter().enumerate() {
        assert_eq!(record.lsn, Lsn(index as u64 + 1));
        assert_eq!(record.payload, payload_of(index), "LSN {}", record.lsn);
    }
}

#[test]
fn a_newest_segment_cut_inside_its_last_record_is_a_torn_tail_that_recovery_cuts() {
    for keep in [1u64, 20, RECORD_HEADER_BYTES as u64 + 3] {
        let (_tmp, dir, records) = build_log();
        let newest = segments(&dir).last().expect("segments").path.clone();
        let last = *placed_records(&newest).last().expect("records");
        let file = fs::OpenOptions::new()
            .write(true)
            .open(&newest)
            .expect("open");
        file.set_len(last.offset + keep).expect("truncate");
        drop(file);
        assert_cut_and_continues(
            &dir,
            &newest,
            last.offset,
            keep,
            Lsn(records.len() as u64 - 1),
        );
    }
}

#[test]
fn garbage_or_zeros_after_the_last_record_are_a_torn_tail_that_recovery_cuts() {
    let garbage: Vec<u8> = (0..777u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for tail in [garbage, vec![0u8; 4096], vec![0xff; 3]] {
        let (_tmp, dir, records) = build_log();
        let newest = segments(&dir).last().expect("segments").path.clone();
        let end = fs::metadata(&newest).expect("stat").len();
        let mut bytes = fs::read(&newest).expect("read");
        bytes.extend_from_slice(&tail);
        fs::write(&newest, bytes).expect("write");
        assert_cut_and_continues(
            &dir,
            &newest,
            end,
            tail.len() as u64,
            Lsn(records.len() as u64),
        );
    }
}

#[test]
fn a_newest_segment_without_a_durable_header_from_a_crash_during_roll_is_removed_at_recovery() {
    for header_bytes in [0usize, 40] {
        let (_tmp, dir, records) = build_log();
        let last = Lsn(records.len() as u64);
        let rolled = dir.join(segment_file_name(last.next()));
        let header = fs::read(&segments(&dir)[0].path).expect("read")[..header_bytes].to_vec();
        fs::write(&rolled, header).expect("create the half-made segment");

        let (mut writer, outcome, recovered) = open(&dir, ScanStart::ZERO).expect("recoverable");
        let torn = outcome.torn_tail.expect("reported");
        assert_eq!(
            (torn.path.clone(), torn.offset, torn.bytes_dropped),
            (rolled.clone(), 0, header_bytes as u64)
        );
        assert!(torn.whole_segment);
        assert!(!rolled.exists(), "the half-made segment is removed");
        assert_eq!(outcome.last_lsn, last);
        assert_eq!(recovered.len(), records.len());

        append_synced(&mut writer, records.len(), 80); // enough to roll again
        drop(writer);
        assert!(
            segments(&dir).len() > outcome.segments.len() - 1,
            "the log rolled on"
        );
        let (outcome, again) = scan_from(&dir, ScanStart::ZERO).expect("verifies");
        assert!(outcome.torn_tail.is_none());
        assert_eq!(again.len(), records.len() + 80);
    }
}

/// Rewrites a record's CRC so that only the chain can tell.
fn fix_crc(bytes: &mut [u8]) {
    let crc = crc32c::crc32c_append(crc32c::crc32c(&bytes[0..4]), &bytes[8..]);
    bytes[4..8].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn a_record_rewritten_with_a_recomputed_crc_is_caught_by_the_chain() {
    let (_tmp, dir, _) = build_log();
    let (segment, victim) = old_segment_victim(&dir);
    let mut file = fs::read(&segment.path).expect("read");
    let start = usize::try_from(victim.offset).expect("small");
    let record = &mut file[start..start + victim.len];
    record[RECORD_HEADER_BYTES + 10] ^= 0xff;
    fix_crc(record);
    assert!(decode(record).is_ok(), "the forged record passes its CRC");
    fs::write(&segment.path, file).expect("write");
    let corruption = expect_corruption(scan_from(&dir, ScanStart::ZERO));
    let expected = Corruption {
        path: segment.path,
        offset: victim.offset,
        lsn: victim.lsn,
        kind: CorruptionKind::ChainMismatch,
    };
    assert_eq!(corruption, expected);
    assert_open_refuses_and_changes_nothing(&dir, ScanStart::ZERO, &expected);
}

#[test]
fn a_record_rewritten_with_recomputed_crc_and_chain_is_caught_at_the_next_record() {
    let (_tmp, dir, records) = build_log();
    let (segment, victim) = old_segment_victim(&dir);
    let prev_chain = records[usize::try_from(victim.lsn.0 - 2).expect("small")].chain;
    let mut file = fs::read(&segment.path).expect("read");
    let start = usize::try_from(victim.offset).expect("small");
    let record = &mut file[start..start + victim.len];
    record[RECORD_HEADER_BYTES + 10] ^= 0xff;
    let body_end = victim.len - cairn_log::record::CHAIN_BYTES;
    let mut hasher = blake3::Hasher::new();
    hasher.update(&prev_chain);
    hasher.update(&record[0..4]);
    hasher.update(&record[8..body_end]);
    let chain = hasher.finalize();
    record[body_end..].copy_from_slice(&chain.as_bytes()[..cairn_log::record::CHAIN_BYTES]);
    fix_crc(record);
    let forged = decode(record).expect("the forged record decodes").0;
    assert_eq!(
        forged.expected_chain(&prev_chain),
        forged.chain,
        "the forgery links to its predecessor"
    );
    fs::write(&segment.path, file).expect("write");
    let next = placed_records(&segment.path)
        .into_iter()
        .find(|p| p.lsn == victim.lsn.next())
        .expect("a next record");
    let corruption = expect_corruption(scan_from(&dir, ScanStart::ZERO));
    let expected = Corruption {
        path: segment.path,
        offset: next.offset,
        lsn: next.lsn,
        kind: CorruptionKind::ChainMismatch,
    };
    assert_eq!(corruption, expected);
}

#[test]
fn a_snapshot_start_whose_chain_disagrees_with_the_log_is_snapshot_mismatch() {
    let (_tmp, dir, records) = build_log();
    let wrong = ScanStart {
        after_lsn: Lsn(100),
        chain: [0xab; cairn_log::record::CHAIN_BYTES],
    };
    let corruption = expect_corruption(scan_from(&dir, wrong));
    assert_eq!(
        (corruption.kind.clone(), corruption.lsn),
        (CorruptionKind::SnapshotMismatch, Lsn(100))
    );
    assert_open_refuses_and_changes_nothing(&dir, wrong, &corruption);

    // A chain from another position does not fit either.
    let shifted = ScanStart {
        after_lsn: Lsn(100),
        chain: records[100].chain,
    };
    assert_eq!(
        expect_corruption(scan_from(&dir, shifted)).kind,
        CorruptionKind::SnapshotMismatch
    );

    // A snapshot ahead of the log.
    let last = records.last().expect("records");
    let ahead = ScanStart {
        after_lsn: Lsn(last.lsn.0 + 5),
        chain: last.chain,
    };
    let corruption = expect_corruption(scan_from(&dir, ahead));
    assert_eq!(
        (corruption.kind, corruption.lsn),
        (CorruptionKind::SnapshotMismatch, ahead.after_lsn)
    );

    // The right chain replays exactly the records after the snapshot.
    let right = ScanStart {
        after_lsn: Lsn(100),
        chain: records[99].chain,
    };
    let (_, visited) = scan_from(&dir, right).expect("a matching snapshot scans");
    assert_eq!(&visited[..], &records[100..]);
}

#[test]
fn a_snapshot_at_the_end_of_a_segment_recovers_when_the_next_segment_is_empty_or_headerless() {
    // A snapshot taken at the last record of a segment, then a crash while rolling: the newest
    // segment has only its header, or not even that. Recovery from the snapshot must work.
    for newest_len in [SEGMENT_HEADER_BYTES, 0] {
        let (_tmp, dir, records) = build_log();
        let newest = segments(&dir).last().expect("segments").clone();
        let file = fs::OpenOptions::new()
            .write(true)
            .open(&newest.path)
            .expect("open");
        file.set_len(newest_len).expect("truncate");
        drop(file);
        let at = usize::try_from(newest.first_lsn.0 - 1).expect("small");
        let snapshot = ScanStart {
            after_lsn: Lsn(at as u64),
            chain: records[at - 1].chain,
        };

        let (mut writer, outcome, visited) =
            open(&dir, snapshot).expect("recovery from the snapshot");
        assert!(visited.is_empty(), "nothing after the snapshot");
        assert_eq!(outcome.last_lsn, snapshot.after_lsn);
        assert_eq!(outcome.last_chain, snapshot.chain);
        assert_eq!(
            outcome.torn_tail.is_some(),
            newest_len == 0,
            "only the headerless segment is torn"
        );
        append_synced(&mut writer, at, 5);
        drop(writer);
        let (_, all) = scan_from(&dir, ScanStart::ZERO).expect("the continued log verifies");
        assert_eq!(all.len(), at + 5);
        assert_eq!(&all[..at], &records[..at]);
    }
}

#[test]
fn regression_an_empty_first_segment_left_by_a_crash_at_creation_is_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log_dir = dir.path().join("log");
    std::fs::create_dir_all(&log_dir).expect("mkdir");
    let empty = log_dir.join(cairn_log::segment::segment_file_name(cairn_types::Lsn(1)));
    std::fs::write(&empty, b"").expect("an empty first segment");
    let storage: std::sync::Arc<dyn cairn_log::storage::Storage> =
        std::sync::Arc::new(cairn_log::storage::FileStorage);
    let (mut writer, outcome) = cairn_log::open_log(
        storage,
        &log_dir,
        cairn_log::LogOptions::default(),
        cairn_log::ScanStart::ZERO,
        &mut |_| Ok(()),
    )
    .expect("opens");
    assert!(outcome.torn_tail.is_some_and(|t| t.whole_segment));
    let entry = cairn_log::Entry {
        timestamp_ms: 1,
        record_type: 1,
        payload: b"x",
    };
    let range = writer.append(&[entry]).expect("appends");
    writer.sync().expect("syncs");
    assert_eq!(range.first, cairn_types::Lsn(1));
}

#[test]
fn from_a_snapshot_the_records_before_it_are_skipped_and_everything_from_it_on_is_checked() {
    let start_at = |records: &[Record], placed: &Placed| ScanStart {
        after_lsn: placed.lsn,
        chain: records[usize::try_from(placed.lsn.0 - 1).expect("small")].chain,
    };
    let payload_byte = |placed: &Placed| placed.offset + RECORD_HEADER_BYTES as u64 + 3;

    // A flipped payload byte before the snapshot's record: not looked at from the snapshot (a
    // scan from zero still finds it), and the records after the snapshot replay exactly.
    let (_tmp, dir, records) = build_log();
    let segment = segments(&dir)[1].clone();
    let placed = placed_records(&segment.path);
    let snapshot = placed[placed.len() / 2];
    let start = start_at(&records, &snapshot);
    flip_byte(&segment.path, payload_byte(&placed[1]), 0x04);
    let (outcome, visited) = scan_from(&dir, start).expect("damage before the snapshot is skipped");
    let after = usize::try_from(snapshot.lsn.0).expect("small");
    assert_eq!(&visited[..], &records[after..]);
    assert_eq!(outcome.records_skipped, placed.len() as u64 / 2);
    assert_eq!(outcome.last_lsn, records.last().expect("records").lsn);
    let full = expect_corruption(scan_from(&dir, ScanStart::ZERO));
    assert_eq!((full.lsn, full.offset), (placed[1].lsn, placed[1].offset));

    // A flipped length byte before it: the skip cannot go on, and the segment is checked from
    // its start, reporting what a full scan reports.
    let (_tmp, dir, records) = build_log();
    let segment = segments(&dir)[1].clone();
    let placed = placed_records(&segment.path);
    let snapshot = placed[placed.len() / 2];
    flip_byte(&segment.path, placed[2].offset + 1, 0x01);
    let from_snapshot = expect_corruption(scan_from(&dir, start_at(&records, &snapshot)));
    assert_eq!(
        from_snapshot,
        expect_corruption(scan_from(&dir, ScanStart::ZERO))
    );
    assert_eq!(from_snapshot.lsn, placed[2].lsn);
    assert_open_refuses_and_changes_nothing(&dir, start_at(&records, &snapshot), &from_snapshot);

    // Damage to the snapshot's own record, or to any record after it in the same (old) segment,
    // is corruption from the snapshot too.
    for victim in [placed.len() / 2, placed.len() / 2 + 1, placed.len() - 1] {
        let (_tmp, dir, records) = build_log();
        let segment = segments(&dir)[1].clone();
        let placed = placed_records(&segment.path);
        let snapshot = placed[placed.len() / 2];
        flip_byte(&segment.path, payload_byte(&placed[victim]), 0x10);
        let corruption = expect_corruption(scan_from(&dir, start_at(&records, &snapshot)));
        let expected = Corruption {
            path: segment.path.clone(),
            offset: placed[victim].offset,
            lsn: placed[victim].lsn,
            kind: CorruptionKind::BadChecksum,
        };
        assert_eq!(corruption, expected, "victim {victim}");
        assert_open_refuses_and_changes_nothing(&dir, start_at(&records, &snapshot), &expected);
    }

    // A torn tail after a snapshot in the newest segment is still found and cut.
    let (_tmp, dir, records) = build_log();
    let newest = segments(&dir).last().expect("segments").clone();
    let placed = placed_records(&newest.path);
    assert!(placed.len() >= 3, "the newest segment holds a few records");
    let snapshot = placed[placed.len() / 2];
    let last = placed[placed.len() - 1];
    flip_byte(&newest.path, payload_byte(&last), 0x10);
    let (_, outcome, visited) =
        open(&dir, start_at(&records, &snapshot)).expect("a torn tail is recoverable");
    let torn = outcome
        .torn_tail
        .expect("the damaged last record is a torn tail");
    assert_eq!(torn.offset, last.offset);
    assert_eq!(outcome.last_lsn, Lsn(last.lsn.0 - 1));
    let after = usize::try_from(snapshot.lsn.0).expect("small");
    assert_eq!(&visited[..], &records[after..records.len() - 1]);
}

#[test]
fn a_skip_across_many_read_chunks_lands_on_the_snapshot_record() {
    // Segments larger than the scan's read buffer: the skip moves past buffered bytes.
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("log");
    let options = LogOptions {
        segment_bytes_max: 32 * 1024 * 1024,
    };
    let (mut writer, _) =
        open_log(storage(), &dir, options, ScanStart::ZERO, &mut |_| Ok(())).expect("opens");
    let payload = vec![5u8; 3000];
    let mut chain_at = None;
    for batch in 0..40u64 {
        let entries: Vec<Entry<'_>> = (0..100)
            .map(|_| Entry {
                timestamp_ms: 1_000,
                record_type: 1,
                payload: &payload,
            })
            .collect();
        writer.append(&entries).expect("append");
        if batch == 35 {
            chain_at = Some((writer.last_lsn(), writer.last_chain()));
        }
    }
    writer.sync().expect("sync");
    drop(writer);
    let (after_lsn, chain) = chain_at.expect("taken");
    let (outcome, visited) = scan_from(&dir, ScanStart { after_lsn, chain }).expect("scans");
    assert_eq!(outcome.records_skipped, after_lsn.0 - 1);
    assert_eq!(visited.len(), 400);
    assert_eq!(visited[0].lsn, after_lsn.next());
}
