//! Unit tests of the log writer: reassembly, cuts, rotation, /dev/null.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::lines::CUT_MARKER;
use super::outage::OUTAGE_REPORT_EVERY;
use super::*;
use crate::config::{LogFiles, LogType};

fn spec(dir: &Path, interval: RotateInterval) -> LogSpec {
    LogSpec {
        files: vec![LogFiles {
            instance: None,
            out: dir.join("a-out.log"),
            err: dir.join("a-err.log"),
            combined: dir.join("a.log"),
        }],
        merge_logs: true,
        time: false,
        date_format: None,
        log_type: LogType::Text,
        max_line: 16,
        max_size: 1 << 20,
        interval,
        retain: 100,
        compress: false,
    }
}

fn chunk(w: &mut Writer, at: SystemTime, stream: Stream, data: &[u8]) {
    w.handle(LogMsg::Chunk { pipe: stream as u64, instance: 0, stream, at, data: data.to_vec() });
    w.write_all();
}

#[test]
fn partial_writes_are_reassembled_and_long_lines_cut_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::new("a".into(), spec(dir.path(), RotateInterval::None), Arc::default(), Maint::disconnected());
    let at = SystemTime::now();
    chunk(&mut w, at, Stream::Out, b"hel");
    chunk(&mut w, at, Stream::Err, b"e1\n");
    chunk(&mut w, at, Stream::Out, b"lo\n0123456789abcdefXYZ");
    chunk(&mut w, at, Stream::Out, b"MORE\nnext\n");
    let out = std::fs::read_to_string(dir.path().join("a-out.log")).unwrap();
    assert_eq!(out, format!("[0] hello\n[0] 0123456789abcdef{}\n[0] next\n", String::from_utf8_lossy(CUT_MARKER)));
    let comb = std::fs::read_to_string(dir.path().join("a.log")).unwrap();
    assert_eq!(comb.lines().next(), Some("[0/err] e1"), "arrival order: the err line completed first");
    assert_eq!(w.stats.cut_lines.load(Ordering::Relaxed), 1);
}

#[test]
fn hourly_rotation_happens_between_lines_when_the_hour_changes() {
    let dir = tempfile::tempdir().unwrap();
    let mut w =
        Writer::new("a".into(), spec(dir.path(), RotateInterval::Hourly), Arc::default(), Maint::disconnected());
    let t0 = UNIX_EPOCH + Duration::from_secs(1_764_417_600); // 12:00:00
    chunk(&mut w, t0, Stream::Out, b"one\n");
    chunk(&mut w, t0 + Duration::from_secs(1800), Stream::Out, b"two\n");
    chunk(&mut w, t0 + Duration::from_secs(3600), Stream::Out, b"three\n");
    let rotated = super::super::rotate::rotated_files(&dir.path().join("a-out.log"));
    assert_eq!(rotated.len(), 1, "{rotated:?}");
    assert_eq!(std::fs::read_to_string(&rotated[0]).unwrap(), "[0] one\n[0] two\n");
    assert_eq!(std::fs::read_to_string(dir.path().join("a-out.log")).unwrap(), "[0] three\n");
}

#[test]
fn size_rotation_keeps_files_at_or_under_max_size() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec(dir.path(), RotateInterval::None);
    s.max_size = 1024;
    s.max_line = 1024;
    let mut w = Writer::new("a".into(), s, Arc::default(), Maint::disconnected());
    let line = [b'x'; 99];
    let mut data = Vec::new();
    for _ in 0..100 {
        data.extend_from_slice(&line);
        data.push(b'\n');
    }
    chunk(&mut w, SystemTime::now(), Stream::Out, &data);
    let current = dir.path().join("a-out.log");
    let files = super::super::rotate::rotated_files(&current);
    assert!(files.len() >= 9, "{}", files.len());
    let mut total = 0;
    for f in files.iter().chain([&current]) {
        let len = std::fs::metadata(f).unwrap().len();
        assert!(len <= 1024, "{} is {len} bytes", f.display());
        total += len;
    }
    assert_eq!(total, 100 * (4 + 99 + 1), "no byte lost or repeated");
}

#[test]
fn dev_null_is_never_rotated_removed_or_written_through() {
    let dir = tempfile::tempdir().unwrap();
    let spec = LogSpec {
        files: vec![LogFiles {
            instance: None,
            out: dir.path().join("a-out.log"),
            err: dir.path().join("a-err.log"),
            combined: PathBuf::from("/dev/null"),
        }],
        merge_logs: true,
        time: false,
        date_format: None,
        log_type: LogType::Text,
        max_line: 1024,
        max_size: 1024,
        interval: RotateInterval::Hourly,
        retain: 1,
        compress: false,
    };
    let mut w = Writer::new("a".into(), spec, Arc::default(), Maint::disconnected());
    let at = UNIX_EPOCH + std::time::Duration::from_secs(1_764_417_600);
    let data = vec![b'x'; 100].into_iter().chain([b'\n']).cycle().take(101 * 50).collect::<Vec<u8>>();
    w.handle(LogMsg::Chunk { pipe: 1, instance: 0, stream: Stream::Out, at, data });
    w.handle(LogMsg::Chunk {
        pipe: 1,
        instance: 0,
        stream: Stream::Out,
        at: at + std::time::Duration::from_secs(7200),
        data: b"later\n".to_vec(),
    });
    let (done, _wait) = tokio::sync::oneshot::channel();
    w.handle(LogMsg::Truncate(done));
    w.write_all();
    assert!(Path::new("/dev/null").exists(), "flush must not remove /dev/null");
    assert!(std::fs::metadata("/dev/null").unwrap().file_type().is_char_device_like());
}

trait CharDevice {
    fn is_char_device_like(&self) -> bool;
}
impl CharDevice for std::fs::FileType {
    fn is_char_device_like(&self) -> bool {
        use std::os::unix::fs::FileTypeExt;
        self.is_char_device()
    }
}

#[test]
fn an_unfinished_line_of_an_ended_run_is_not_joined_to_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::new("a".into(), spec(dir.path(), RotateInterval::None), Arc::default(), Maint::disconnected());
    let at = SystemTime::now();
    w.handle(LogMsg::Chunk { pipe: 1, instance: 0, stream: Stream::Out, at, data: b"progress 50%".to_vec() });
    w.handle(LogMsg::Chunk { pipe: 3, instance: 0, stream: Stream::Out, at, data: b"listening\n".to_vec() });
    w.handle(LogMsg::Eof { pipe: 1, instance: 0, stream: Stream::Out, at });
    w.write_all();
    let out = std::fs::read_to_string(dir.path().join("a-out.log")).unwrap();
    assert_eq!(out, "[0] listening\n[0] progress 50%\n");
}

#[test]
fn failed_writes_never_count_toward_max_size_nor_rotate_and_held_lines_arrive_after() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec(dir.path(), RotateInterval::None);
    (s.max_size, s.max_line, s.files[0].combined) = (1024, 1024, PathBuf::from("/dev/null"));
    let mut w = Writer::new("a".into(), s, Arc::default(), Maint::disconnected());
    let out = dir.path().join("a-out.log");
    // A read-only descriptor: every write fails (EBADF), as every write does on a full disk.
    w.sinks[0].file = Some(std::fs::File::open(&out).unwrap());
    let data: Vec<u8> = [[b'x'; 99].as_slice(), b"\n"].concat().repeat(100);
    chunk(&mut w, SystemTime::now(), Stream::Out, &data);
    assert!(w.sinks[0].failing());
    assert_eq!((w.sinks[0].size, w.sinks[0].buf.len()), (0, 100 * 104), "nothing counted, every line held");
    assert_eq!(w.stats.rotations.load(Ordering::Relaxed), 0, "10 KiB of failed writes past a 1K max_size");
    assert!(super::super::rotate::rotated_files(&out).is_empty());
    // `l4ctl reload-logs` retries at once: the held lines arrive, in order.
    let (done, _wait) = tokio::sync::oneshot::channel();
    w.handle(LogMsg::Reopen(done));
    assert!(!w.sinks[0].failing());
    assert_eq!(std::fs::read(&out).unwrap().len(), 100 * 104);
    // Rotation resumes with the next line.
    chunk(&mut w, SystemTime::now(), Stream::Out, b"next\n");
    assert_eq!(w.stats.rotations.load(Ordering::Relaxed), 1);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "[0] next\n");
    assert_eq!(w.stats.dropped_bytes.load(Ordering::Relaxed), 0);
}

#[test]
fn a_failing_file_is_reported_when_it_starts_then_once_a_minute_then_when_it_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec(dir.path(), RotateInterval::None);
    s.files[0].out = PathBuf::from("/dev/full");
    let mut w = Writer::new("a".into(), s, Arc::default(), Maint::disconnected());
    chunk(&mut w, SystemTime::now(), Stream::Out, b"lost\n");
    let since = w.outage.as_ref().expect("an outage").since;
    w.watch(since + OUTAGE_REPORT_EVERY / 2);
    assert_eq!(w.outage.as_ref().unwrap().reported, since, "not reported again within a minute");
    w.watch(since + OUTAGE_REPORT_EVERY);
    assert_eq!(w.outage.as_ref().unwrap().reported, since + OUTAGE_REPORT_EVERY);
    w.sinks[0].file = Some(std::fs::File::create(dir.path().join("space")).unwrap());
    w.sinks[0].retry_now();
    w.write_all();
    assert!(w.outage.is_none(), "writing works again");
}

#[test]
fn a_chunk_neither_full_file_takes_is_dropped_whole_and_counted_without_tearing_a_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec(dir.path(), RotateInterval::None);
    s.max_line = 1 << 20;
    (s.files[0].out, s.files[0].combined) = (PathBuf::from("/dev/full"), PathBuf::from("/dev/full"));
    let mut w = Writer::new("a".into(), s, Arc::default(), Maint::disconnected());
    let line = [[b'x'; 1023].as_slice(), b"\n"].concat();
    chunk(&mut w, SystemTime::now(), Stream::Out, &line.repeat(1100));
    assert!(w.sinks[0].full() && w.sinks[2].full(), "1.1 MiB of lines on a full disk: both files hold all they may");
    let dropped = w.stats.dropped_bytes.load(Ordering::Relaxed);
    assert!(dropped > 0 && dropped.is_multiple_of(1024), "whole lines, once per file: {dropped}");
    let lost = b"gone\nhead of a line";
    chunk(&mut w, SystemTime::now(), Stream::Out, lost);
    assert_eq!(w.stats.dropped_bytes.load(Ordering::Relaxed), dropped + 2 * lost.len() as u64, "once per file");
    // Space returns before the rest of that line arrives: the rest is not written as a line.
    for i in [0, 2] {
        w.sinks[i].file = Some(std::fs::File::create(dir.path().join(format!("space-{i}"))).unwrap());
        w.sinks[i].retry_now();
    }
    w.write_all();
    chunk(&mut w, SystemTime::now(), Stream::Out, b" and its tail\nnext\n");
    let out = std::fs::read_to_string(dir.path().join("space-0")).unwrap();
    assert!(out.ends_with("x\n[0] next\n"), "{}", &out[out.len() - 40..]);
    assert!(!out.contains("tail") && !out.contains("gone"));
}
