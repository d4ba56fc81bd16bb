//! cellweave-embed (not implemented yet).
fn main() {
    eprintln!("cellweave-embed: not implemented yet");
    std::process::exit(2);
}
