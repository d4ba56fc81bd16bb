//! cellweave-score (not implemented yet).
fn main() {
    eprintln!("cellweave-score: not implemented yet");
    std::process::exit(2);
}
