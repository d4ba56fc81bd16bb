//! cellweave-train (not implemented yet).
fn main() {
    eprintln!("cellweave-train: not implemented yet");
    std::process::exit(2);
}
