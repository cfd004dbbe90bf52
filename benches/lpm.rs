//! Placeholder until the lpm bench lands.
fn main() {}
