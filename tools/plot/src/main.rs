//! cellweave-plot (not implemented yet).
fn main() {
    eprintln!("cellweave-plot: not implemented yet");
    std::process::exit(2);
}
