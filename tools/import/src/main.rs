//! cellweave-import (not implemented yet).
fn main() {
    eprintln!("cellweave-import: not implemented yet");
    std::process::exit(2);
}
