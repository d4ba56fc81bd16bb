//! cellweave-refine (not implemented yet).
fn main() {
    eprintln!("cellweave-refine: not implemented yet");
    std::process::exit(2);
}
