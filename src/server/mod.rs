//! Sockets, worker threads and connections.
