//! Everything a guest hands the host is bounded, cut at character
//! boundaries, and made safe to print.
//!
//! A guest controls the bytes of every string it passes (log lines and
//! fields, error messages, report details, health checks, plugin info,
//! artifact labels). The host must never panic on them (a cut inside a
//! multi-byte character once did), never hold more of them than these caps
//! allow, and never pass a control character to a terminal: ANSI and OSC
//! sequences, a carriage return that overwrites a line, or a newline that
//! forges a line attributed to another instance are escaped where the text
//! enters the host. What is dropped is counted and said, never silent.

/// A log message or error message, in bytes.
pub const MAX_MESSAGE: usize = 16 * 1024;
/// A short text: a name, a key, a version, a media type.
pub const MAX_NAME: usize = 256;
/// A value: a field or label value, a report detail, a health detail.
pub const MAX_VALUE: usize = 4 * 1024;
/// Entries of a guest-built list (fields of a line, details of a report,
/// checks of a health report, capabilities and params of plugin info).
pub const MAX_ENTRIES: usize = 256;
/// Fields kept per log line.
pub const MAX_FIELDS: usize = 32;
/// Log lines kept per call, and their total bytes.
pub const MAX_LOG_LINES: usize = 10_000;
/// Bytes of log lines kept per call.
pub const MAX_LOG_BYTES: usize = 4 << 20;
/// Host-side resources (readers, writers, streams, pollables, HTTP header
/// maps…) a guest may hold open at once. Each may hold host memory of its
/// own (a header map up to [`MAX_HTTP_FIELDS_BYTES`]), so the count bounds
/// what a guest can make the host keep, whatever its memory limit.
pub const MAX_RESOURCES: usize = 2_000;
/// Bytes of one HTTP header map (`wasi:http` fields).
pub const MAX_HTTP_FIELDS_BYTES: usize = 64 * 1024;
/// Artifacts one call may create.
pub const MAX_ARTIFACTS_PER_CALL: usize = 1_000;
/// Artifacts one call may have open at once: readers, and writers not yet
/// finished. Each holds host memory the guest's memory limit does not
/// count (a writer keeps up to a 4 MiB chunk before it has a second, and
/// the threads storing chunks; a reader of a chunked artifact fetches
/// and decompresses several 4 MiB chunks ahead on threads of its own):
/// tens of MiB each, so the 2,000 resource handles alone would let a
/// guest make the host hold gigabytes.
pub const MAX_OPEN_ARTIFACTS: usize = 8;

/// Cut `text` to at most `max` bytes at a character boundary, saying how
/// much was dropped. Never panics.
pub fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [{} bytes cut]", &text[..end], text.len() - end)
}

/// One line of text as it may reach a terminal: control characters (C0,
/// DEL, C1), and the bidirectional overrides that make text read
/// differently than it is, become visible escapes (`\n`, `\x1b`,
/// `\u{202e}`). Bounded to `max` bytes first.
pub fn line(text: &str, max: usize) -> String {
    // A trailing line break (a command's output, a `println!`) ends the
    // text; it is not part of it.
    escape(&cut(text.trim_end_matches(['\n', '\r']), max), false)
}

/// Like [`line`], but newlines are kept (a command's stderr tail); every
/// other control character is escaped.
pub fn lines(text: &str, max: usize) -> String {
    escape(&cut(text, max), true)
}

fn escape(text: &str, keep_newlines: bool) -> String {
    if !text.chars().any(needs_escape) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\n' if keep_newlines => out.push('\n'),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x80 && needs_escape(c) => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Keep at most `max` entries of a guest-built list, cleaning each with
/// `clean`; returns how many were dropped.
pub fn list<T>(items: &mut Vec<T>, max: usize, mut clean: impl FnMut(&mut T)) -> usize {
    let dropped = items.len().saturating_sub(max);
    items.truncate(max);
    items.iter_mut().for_each(&mut clean);
    dropped
}

/// Clean a string in place with [`line`].
pub fn in_place(text: &mut String, max: usize) {
    let cleaned = line(text, max);
    if cleaned != *text {
        *text = cleaned;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_inside_a_multibyte_character_does_not_panic() {
        // Every offset of a string of 2-, 3- and 4-byte characters.
        let text = "é€😀".repeat(50);
        for max in 0..text.len() + 2 {
            let out = cut(&text, max);
            assert!(out.len() <= max + 32, "{max}");
        }
        assert_eq!(cut("abc", 3), "abc");
        assert_eq!(cut("ab€", 3), "ab… [3 bytes cut]");
    }

    #[test]
    fn control_characters_cannot_reach_a_terminal() {
        let forged = "ok\n  [other/backup] info: all good\x1b[2J\x1b]8;;http://x\x07\r";
        let out = line(forged, MAX_MESSAGE);
        assert!(!out.chars().any(|c| c.is_control()), "{out}");
        assert!(out.contains("\\n  [other/backup]"));
        assert!(out.contains("\\x1b[2J"));
        assert_eq!(line("\u{202e}txt.exe", 100), "\\u{202e}txt.exe");
        assert_eq!(lines("a\nb\x1b", 100), "a\nb\\x1b");
        assert_eq!(line("plain é", 100), "plain é");
        assert_eq!(line("HTTP 200\r\n", 100), "HTTP 200");
    }

    #[test]
    fn lists_are_capped_and_counted() {
        let mut items: Vec<String> = (0..300).map(|i| format!("x{i}\x1b")).collect();
        let dropped = list(&mut items, MAX_ENTRIES, |s| in_place(s, MAX_NAME));
        assert_eq!(dropped, 44);
        assert_eq!(items.len(), MAX_ENTRIES);
        assert_eq!(items[0], "x0\\x1b");
    }
}
