//! Exec patterns and the other grant syntaxes: parsing never panics, a
//! parsed pattern prints as text that parses to the same pattern, and the
//! grant a refusal suggests matches exactly the refused command (never a
//! wider one).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rewind::grants::{ExecPattern, Grants, OriginPattern, PathGrant, TcpGrant};

fuzz_target!(|input: (&str, Vec<String>)| {
    let (text, args) = input;
    if let Ok(pattern) = ExecPattern::parse(text) {
        let printed = pattern.to_string();
        let again = ExecPattern::parse(&printed).expect("a printed pattern parses");
        assert_eq!(again, pattern, "{printed}");
        let _ = pattern.matches(&pattern.program, &args);
    }
    let _ = OriginPattern::parse(text);
    let _ = TcpGrant::parse(text);
    let _ = PathGrant::parse(text);

    // The suggestion for a refused command allows that command and no
    // other argument list of the same length.
    let Some((program, rest)) = args.split_first() else {
        return;
    };
    if program.is_empty() {
        return;
    }
    let denial = Grants::default().check_exec(program, rest).unwrap_err();
    let suggested = ExecPattern::parse(&denial.attempted).expect("the suggestion parses");
    assert!(suggested.matches(program, rest), "{}", denial.attempted);
    let mut other = rest.to_vec();
    if let Some(first) = other.first_mut() {
        first.push('x');
        assert!(!suggested.matches(program, &other), "{}", denial.attempted);
    }
});
