//! README "Logs", full disk: a log folder that fills up loses new lines (counted),
//! never rotated files; the daemon stays idle meanwhile and resumes by itself.
//! Root only: the full disk is a real tmpfs.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use layer4_supervisor::logs::follow::read_maybe_gz;
use layer4_supervisor::logs::rotate::rotated_files;
use layer4_supervisor::os::procs::{clock_ticks_and_page_size, read_stat};

use crate::helper::*;
use crate::logs::{counters, numbers};

/// CPU the daemon may use while every log write fails (percent of one core).
const IDLE_CPU_PERCENT: f64 = 5.0;
/// How long that CPU is measured: long enough for a loaded machine's noise to average out.
const CPU_WINDOW: Duration = Duration::from_secs(4);

/// A tmpfs mounted on a folder; lazily unmounted on drop (the daemon may still hold files).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0750"), "tmpfs"])
            .arg(dir)
            .output();
        let out = out.unwrap();
        assert!(out.status.success(), "mount: {}", text(&out));
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Append zeros to `path` until the file system has no space left.
fn fill(path: &Path) {
    let mut f = OpenOptions::new().create(true).append(true).open(path).unwrap();
    let block = vec![0u8; 64 << 10];
    loop {
        match f.write(&block) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => return,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
}

/// The lines of each file of a log, oldest rotated file first; `None` when a file
/// vanished under the read (compression replaced it): the caller reads again.
fn files_now(current: &Path) -> Option<Vec<Vec<String>>> {
    let mut files = rotated_files(current);
    files.push(current.to_path_buf());
    let read =
        |f: &PathBuf| Some(String::from_utf8_lossy(&read_maybe_gz(f).ok()?).lines().map(str::to_owned).collect());
    files.iter().map(read).collect()
}

/// The CPU seconds the process has used.
fn cpu_seconds(pid: i32) -> f64 {
    read_stat(pid).expect("the daemon's stat").cpu_ticks as f64 / clock_ticks_and_page_size().0 as f64
}

/// `GET /metrics` over the control socket.
fn metrics(env: &Env) -> String {
    let mut s = std::os::unix::net::UnixStream::connect(env.home().join("l4ctl.sock")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body
}

#[test]
fn a_full_disk_drops_new_lines_but_never_rotated_files_and_writing_resumes_when_space_returns() {
    if !root_or_skip("mounting a tmpfs") {
        return;
    }
    let env = Env::new("");
    let disk = env.path("disk");
    // ~4 KB lines, 8 every 80 ms (~350 KiB/s in ~100 writes a second): what a failing
    // file holds (1 MiB) is full after a few seconds of outage, so lines are dropped.
    // While the file `flood` exists the app writes as fast as it can.
    let flood = env.path("flood");
    let script = format!(
        "pad=$(head -c 4000 /dev/zero | tr '\\0' x); i=0; while :; do j=0; \
         while [ $j -lt 8 ]; do i=$((i+1)); j=$((j+1)); echo \"$pad n$i\"; done; [ -e {} ] || sleep 0.08; done",
        flood.display()
    );
    let files = format!(
        "time = false\nout_file = \"{d}/full-out.log\"\nerror_file = \"{d}/full-err.log\"\nlog_file = \"{d}/full.log\"\n\
         [apps.log_rotate]\nmax_size = \"64K\"\ncompress = true\nretain = 1000",
        d = disk.display()
    );
    env.write_config(&sh_app("full", &script, &files));
    // 8 MiB: room for both current files plus the 1 MiB each holds when space returns.
    let _tmpfs = Tmpfs::mount(&disk, "8m");
    env.start();
    let out = disk.join("full-out.log");
    wait_for(Duration::from_secs(20), "a few rotations", || {
        (counters(&env, "full")["rotations"].as_u64() >= Some(4)).then_some(())
    });
    // The newest line on disk before the disk fills: it and every earlier one must survive.
    let on_disk_before = wait_for(Duration::from_secs(5), "lines in the current file", || {
        let text = std::fs::read_to_string(&out).ok()?;
        numbers(&text.lines().map(str::to_owned).collect::<Vec<_>>(), 'n').last().copied()
    });

    let filler = disk.join("filler");
    let rotations_at_fill = counters(&env, "full")["rotations"].as_u64().unwrap();
    fill(&filler);
    wait_for(Duration::from_secs(30), "dropped bytes once 1 MiB is held", || {
        (counters(&env, "full")["dropped_bytes"].as_u64() > Some(0)).then_some(())
    });
    // Whatever a compression under way when the disk filled has freed since.
    fill(&filler);
    // The daemon must stay idle even when the app floods it with lines it cannot write.
    std::fs::write(&flood, "").unwrap();

    let pid = env.daemon_pid();
    let c_0 = counters(&env, "full");
    let (cpu_0, t_0) = (cpu_seconds(pid), Instant::now());
    // A measurement window, not a wait for an event: the app keeps writing throughout.
    std::thread::sleep(CPU_WINDOW);
    let (cpu_1, wall, c_1) = (cpu_seconds(pid), t_0.elapsed(), counters(&env, "full"));
    let number = |c: &serde_json::Value, k: &str| c[k].as_u64().unwrap_or_else(|| panic!("no {k} in {c}"));
    let (rotations_0, rotations_1) = (number(&c_0, "rotations"), number(&c_1, "rotations"));
    let (dropped_0, dropped_1) = (number(&c_0, "dropped_bytes"), number(&c_1, "dropped_bytes"));
    let cpu_percent = 100.0 * (cpu_1 - cpu_0) / wall.as_secs_f64();
    eprintln!(
        "full disk: daemon CPU {cpu_percent:.2}% over {wall:?}; rotations {rotations_at_fill} at the fill, \
         {rotations_0}..{rotations_1} in the window; dropped bytes {dropped_0}..{dropped_1}"
    );
    assert!(cpu_percent < IDLE_CPU_PERCENT, "the daemon used {cpu_percent:.1}% of a core while the disk was full");
    assert_eq!(rotations_1, rotations_0, "no rotation while every write fails");
    assert!(dropped_1 > dropped_0, "the app is slowed, not stopped: its output is still read, and dropped");
    assert!(rotations_1 <= rotations_at_fill + 4, "rotations exploded: {rotations_at_fill} -> {rotations_1}");
    std::fs::remove_file(&flood).unwrap();

    // Dropped bytes show in describe (above), status, the status table and /metrics.
    assert!(env.status().log_dropped_bytes.get("full").is_some_and(|d| *d > 0), "{:?}", env.status());
    let table = env.l4(&["status"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("full: ") && table.contains("of log lines dropped"), "{table}");
    let metrics = metrics(&env);
    let line = metrics.lines().find(|l| l.starts_with("l4_app_log_dropped_bytes_total{app=\"full\"}"));
    assert!(line.is_some_and(|l| !l.ends_with(" 0")), "{metrics}");

    // Space returns: held lines, then new ones, arrive without any help.
    let received = counters(&env, "full")["lines"].as_u64().unwrap();
    std::fs::remove_file(&filler).unwrap();
    wait_for(Duration::from_secs(20), "lines written after space returned", || {
        let text = std::fs::read_to_string(&out).ok()?;
        let last = numbers(&text.lines().map(str::to_owned).collect::<Vec<_>>(), 'n').last().copied()?;
        (last > received + 30).then_some(())
    });
    assert!(env.l4(&["stop", "full"]).status.success());
    let files = wait_for(Duration::from_secs(10), "a consistent read of every log file", || files_now(&out));
    let (rotated, current) = files.split_at(files.len() - 1);
    assert!(rotated.iter().all(|f| !f.is_empty()), "an empty rotated file");
    let got = numbers(&files.concat(), 'n');
    assert!(got.windows(2).all(|w| w[0] < w[1]), "a line repeated or out of order");
    assert!(
        got.len() as u64 >= on_disk_before
            && got[..on_disk_before as usize] == (1..=on_disk_before).collect::<Vec<_>>()[..],
        "a line written before the disk filled is gone"
    );
    assert!(got.last().is_some_and(|n| *n > received + 30));
    eprintln!("{} rotated files, {} lines in the current one", rotated.len(), current[0].len());
}
