//! cellweave-pairs (not implemented yet).
fn main() {
    eprintln!("cellweave-pairs: not implemented yet");
    std::process::exit(2);
}
