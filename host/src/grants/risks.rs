//! Grant combinations that amount to running arbitrary code, which
//! `rewind check` reports.
