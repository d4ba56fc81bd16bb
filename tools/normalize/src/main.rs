//! cellweave-normalize (not implemented yet).
fn main() {
    eprintln!("cellweave-normalize: not implemented yet");
    std::process::exit(2);
}
