fn main() {
    println!("phantommesh {}", env!("CARGO_PKG_VERSION"));
}
