//! Making app output safe to print: a log line is whatever a worker wrote, and a
//! terminal obeys control sequences in it. OSC 52 writes the clipboard, other OSC
//! and DCS sequences set titles or query the terminal (whose answer is typed into
//! the shell), CSI moves the cursor or clears the screen, CR and backspace
//! overwrite what was printed. `l4ctl logs` therefore shows every control
//! character as the visible text `\xNN` (lowercase hex, one per byte), keeping only
//! tabs and complete SGR sequences (`ESC [ digits ; : m`), which only colour text.
//! Bytes that are not UTF-8 are shown the same way, since a terminal in an 8-bit
//! mode would read 0x9b as CSI. A backslash is left alone, so `\x1b` in a line can
//! be either the four characters or an escaped ESC; `--raw` prints the bytes.

/// Append `line` to `out` with control characters and invalid UTF-8 made visible.
pub fn escape_controls(line: &[u8], out: &mut Vec<u8>) {
    for chunk in line.utf8_chunks() {
        let text = chunk.valid();
        let mut rest = text;
        while let Some((at, c)) = rest.char_indices().find(|&(_, c)| c.is_control() && c != '\t') {
            out.extend_from_slice(&rest.as_bytes()[..at]);
            let tail = &rest[at..];
            let sgr = sgr_len(tail.as_bytes());
            if sgr > 0 {
                out.extend_from_slice(&tail.as_bytes()[..sgr]);
                rest = &tail[sgr..];
            } else {
                let mut utf8 = [0; 4];
                for b in c.encode_utf8(&mut utf8).bytes() {
                    hex(b, out);
                }
                rest = &tail[c.len_utf8()..];
            }
        }
        out.extend_from_slice(rest.as_bytes());
        for &b in chunk.invalid() {
            hex(b, out);
        }
    }
}

fn hex(b: u8, out: &mut Vec<u8>) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(&[b'\\', b'x', DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 15)]]);
}

/// The length of the SGR sequence `s` starts with, or 0 if it starts with anything else.
fn sgr_len(s: &[u8]) -> usize {
    let Some(params) = s.strip_prefix(b"\x1b[") else { return 0 };
    let n = params.iter().take_while(|b| b.is_ascii_digit() || **b == b';' || **b == b':').count();
    if params.get(n) == Some(&b'm') { n + 3 } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::escape_controls;

    fn esc(line: &[u8]) -> String {
        let mut out = Vec::new();
        escape_controls(line, &mut out);
        String::from_utf8(out).expect("escaped output is UTF-8")
    }

    #[test]
    fn osc52_csi_and_c0_controls_are_shown_as_text() {
        assert_eq!(esc(b"copy \x1b]52;c;SGVsbG8=\x07 done"), "copy \\x1b]52;c;SGVsbG8=\\x07 done");
        assert_eq!(esc(b"\x1b[2J\x1b[H"), "\\x1b[2J\\x1b[H", "clear screen, cursor home");
        assert_eq!(esc(b"a\rb\x08c\x00\x7f"), "a\\x0db\\x08c\\x00\\x7f");
        assert_eq!(esc("8-bit CSI \u{9b}31m".as_bytes()), "8-bit CSI \\xc2\\x9b31m");
        assert_eq!(esc(b"bad \xff\x9b utf-8"), "bad \\xff\\x9b utf-8");
    }

    #[test]
    fn sgr_colours_tabs_and_text_are_kept() {
        let red = "\x1b[31mred\x1b[0m\tand \x1b[1;38;5;208mbold orange\x1b[m, caf\u{e9} \\x1b";
        assert_eq!(esc(red.as_bytes()), red);
        // An SGR cut off at the end of the line is not complete: escaped.
        assert_eq!(esc(b"end \x1b[31"), "end \\x1b[31");
    }
}
