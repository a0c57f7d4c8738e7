//! `ring-bench`: shmring side by side with pipes, sockets and message queues.
//!
//! Placeholder until the benchmark lands.

fn main() {
    println!("ring-bench: not implemented yet");
}
