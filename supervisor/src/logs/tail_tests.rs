//! Unit tests of the bounded tail reader: block edges, unterminated lines, the
//! line and byte limits exactly, and rotated (plain and compressed) files.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::*;

/// `n` lines `{tag}{i}` padded with `x` to `len` bytes (without the newline).
fn numbered(tag: &str, range: std::ops::Range<usize>, len: usize) -> Vec<Vec<u8>> {
    range
        .map(|i| {
            let mut l = format!("{tag}{i} ").into_bytes();
            l.resize(len.max(l.len()), b'x');
            l
        })
        .collect()
}

fn write(path: &Path, lines: &[Vec<u8>], trailing_newline: bool) {
    let mut body = lines.join(&b'\n');
    if trailing_newline {
        body.push(b'\n');
    }
    std::fs::write(path, body).unwrap();
}

fn write_gz(path: &Path, lines: &[Vec<u8>]) {
    let mut gz = flate2::write::GzEncoder::new(std::fs::File::create(path).unwrap(), flate2::Compression::fast());
    for l in lines {
        gz.write_all(l).unwrap();
        gz.write_all(b"\n").unwrap();
    }
    gz.finish().unwrap();
}

fn log(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("a.log")
}

#[test]
fn lines_spanning_many_blocks_come_back_whole_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    // 60 KB lines: almost every line crosses a 64 KiB block edge.
    let lines = numbered("n", 0..40, 60_000);
    write(&log(&dir), &lines, true);
    assert_eq!(last_lines(&log(&dir), 25, MAX_BYTES), Tail { lines: lines[15..].to_vec(), cut: false });
    // Short lines: many lines per block.
    let short = numbered("s", 0..30_000, 37);
    write(&log(&dir), &short, true);
    assert_eq!(last_lines(&log(&dir), 9_999, MAX_BYTES).lines, short[30_000 - 9_999..]);
    assert_eq!(last_lines(&log(&dir), 0, MAX_BYTES), Tail::default());
}

#[test]
fn an_unterminated_last_line_is_a_line() {
    let dir = tempfile::tempdir().unwrap();
    write(&log(&dir), &[b"a".to_vec(), b"b".to_vec(), b"c".to_vec()], false);
    assert_eq!(last_lines(&log(&dir), 2, MAX_BYTES).lines, [b"b".to_vec(), b"c".to_vec()]);
    assert_eq!(last_lines(&log(&dir), 5, MAX_BYTES).lines, [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
    // One long line without any newline, longer than a block.
    let long = numbered("l", 0..1, 200_000);
    write(&log(&dir), &long, false);
    assert_eq!(last_lines(&log(&dir), 3, MAX_BYTES).lines, long);
    let file = std::fs::File::open(log(&dir)).unwrap();
    assert_eq!(after_last_newline(&file, 200_000), 0, "no newline: follow from the start");
    write(&log(&dir), &numbered("p", 0..3, 70_000), false);
    let file = std::fs::File::open(log(&dir)).unwrap();
    assert_eq!(after_last_newline(&file, 3 * 70_000 + 2), 2 * 70_001);
}

#[test]
fn exactly_max_lines_are_returned_of_a_longer_file() {
    let dir = tempfile::tempdir().unwrap();
    let lines = numbered("m", 0..MAX_LINES + 1, 10);
    write(&log(&dir), &lines, true);
    let tail = last_lines(&log(&dir), MAX_LINES, MAX_BYTES);
    assert_eq!(tail.lines.len(), MAX_LINES);
    assert_eq!(tail.lines, lines[1..], "the newest MAX_LINES, oldest first");
    assert!(!tail.cut, "the line limit is not a cut");
}

#[test]
fn exactly_max_bytes_of_lines_fit_and_one_byte_less_drops_the_oldest() {
    let dir = tempfile::tempdir().unwrap();
    // 1023 bytes + a newline: 8192 lines are exactly MAX_BYTES.
    let fit = MAX_BYTES / 1024;
    let lines = numbered("b", 0..fit + 1, 1023);
    write(&log(&dir), &lines, true);
    let tail = last_lines(&log(&dir), MAX_LINES, MAX_BYTES);
    assert_eq!((tail.lines.len(), tail.cut), (fit, true));
    assert_eq!(tail.lines, lines[1..]);
    let tail = last_lines(&log(&dir), MAX_LINES, MAX_BYTES - 1);
    assert_eq!((tail.lines.len(), tail.cut), (fit - 1, true));
    assert_eq!(tail.lines, lines[2..]);
    // A file of exactly MAX_BYTES is returned whole.
    write(&log(&dir), &lines[1..], true);
    assert_eq!(last_lines(&log(&dir), MAX_LINES, MAX_BYTES), Tail { lines: lines[1..].to_vec(), cut: false });
    // A newest line larger than the budget: nothing fits.
    write(&log(&dir), &numbered("h", 0..2, 5000), true);
    assert_eq!(last_lines(&log(&dir), 2, 4000), Tail { lines: vec![], cut: true });
}

#[test]
fn older_lines_come_from_plain_and_compressed_rotated_files_within_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let all = numbered("r", 0..300, 99); // 100 bytes a line with its newline
    write_gz(&dir.path().join("a.20260101-000000-000000-000.log.gz"), &all[..100]);
    write(&dir.path().join("a.20260101-000001-000000-000.log"), &all[100..200], true);
    write(&log(&dir), &all[200..], true);
    assert_eq!(last_lines(&log(&dir), 250, MAX_BYTES), Tail { lines: all[50..].to_vec(), cut: false });
    assert_eq!(last_lines(&log(&dir), 1000, MAX_BYTES), Tail { lines: all.clone(), cut: false });
    // The budget ends inside the compressed file: its newest lines that fit, no gap.
    assert_eq!(last_lines(&log(&dir), 1000, 25_000), Tail { lines: all[50..].to_vec(), cut: true });
    // ... and exactly at the end of the plain one.
    assert_eq!(last_lines(&log(&dir), 1000, 20_000), Tail { lines: all[100..].to_vec(), cut: true });
    // A line longer than the budget inside a compressed file hides everything older.
    let mut odd = all[..100].to_vec();
    odd[60] = vec![b'z'; 30_000];
    write_gz(&dir.path().join("a.20260101-000000-000000-000.log.gz"), &odd);
    assert_eq!(last_lines(&log(&dir), 1000, 25_000), Tail { lines: all[61..].to_vec(), cut: true });
    // No current file (deleted by hand): the rotated files still answer.
    std::fs::remove_file(log(&dir)).unwrap();
    assert_eq!(last_lines(&log(&dir), 10, MAX_BYTES).lines, all[190..200]);
}
