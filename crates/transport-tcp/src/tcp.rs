//! TCP sockets as tcpshm uses them: non-blocking, `TCP_NODELAY` (a message leaves
//! when it is written, not when Nagle's algorithm decides), close-on-exec, IPv4 or
//! IPv6. The client and the server make their sockets here.
//!
//! ```
//! use tcpshm_transport_tcp::tcp;
//! use std::time::Duration;
//!
//! let listener = tcp::listen("127.0.0.1:0".parse().unwrap(), 16).unwrap();
//! let addr = listener.local_addr().unwrap();
//! let client = tcp::connect_timeout(addr, Duration::from_secs(5)).unwrap();
//! assert!(client.nodelay().unwrap());
//! let (server, _peer) = loop {
//!     match tcp::accept(&listener) {
//!         Ok(s) => break s,
//!         Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::yield_now(),
//!         Err(e) => panic!("{e}"),
//!     }
//! };
//! assert!(server.nodelay().unwrap());
//! ```

use mio::net::{TcpListener, TcpStream};
use socket2::{Domain, Protocol, SockAddr, SockRef, Socket, Type};
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::time::Duration;

/// Makes `socket` what a tcpshm connection needs: `TCP_NODELAY` and non-blocking.
pub fn configure(socket: &Socket) -> io::Result<()> {
    socket.set_nodelay(true)?;
    socket.set_nonblocking(true)
}

/// [`configure`] for any TCP socket given by its descriptor (e.g. a
/// `mio::net::TcpStream` from elsewhere).
pub fn configure_fd(fd: &impl AsFd) -> io::Result<()> {
    let s = SockRef::from(fd);
    s.set_nodelay(true)?;
    s.set_nonblocking(true)
}

fn stream_socket(addr: &SocketAddr) -> io::Result<Socket> {
    // socket2 sets close-on-exec at creation.
    Socket::new(Domain::for_address(*addr), Type::STREAM, Some(Protocol::TCP))
}

/// Starts a non-blocking connect to `addr`: the stream is returned at once with the
/// connection in progress (register it for writability; `take_error`/`peer_addr`
/// tell when and whether it completed).
pub fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = stream_socket(&addr)?;
    configure(&socket)?;
    match socket.connect(&SockAddr::from(addr)) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INPROGRESS.raw_os_error()) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(socket.into()))
}

/// Connects to `addr`, blocking at most `timeout`, then makes the stream
/// non-blocking with `TCP_NODELAY` (the client's blocking connect).
pub fn connect_timeout(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let socket = stream_socket(&addr)?;
    socket.connect_timeout(&SockAddr::from(addr), timeout)?;
    configure(&socket)?;
    Ok(TcpStream::from_std(socket.into()))
}

/// A non-blocking listener on `addr` with `SO_REUSEADDR` (a restarted server binds
/// at once). An IPv6 address listens to IPv6 only (`IPV6_V6ONLY`), so an IPv4 and an
/// IPv6 listener can share a port; list both addresses to serve both.
pub fn listen(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
    let socket = stream_socket(&addr)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&SockAddr::from(addr))?;
    socket.listen(backlog)?;
    socket.set_nonblocking(true)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// Accepts one connection (`WouldBlock` when none is pending) and sets
/// `TCP_NODELAY` on it (the accepted stream is already non-blocking).
pub fn accept(listener: &TcpListener) -> io::Result<(TcpStream, SocketAddr)> {
    let (stream, peer) = listener.accept()?;
    stream.set_nodelay(true)?;
    Ok((stream, peer))
}

/// A connected `std` stream (e.g. from a blocking login exchange) as a configured
/// non-blocking mio stream.
pub fn from_std(stream: std::net::TcpStream) -> io::Result<TcpStream> {
    stream.set_nodelay(true)?;
    stream.set_nonblocking(true)?;
    Ok(TcpStream::from_std(stream))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn accept_blocking(l: &TcpListener) -> TcpStream {
        for _ in 0..100_000 {
            match accept(l) {
                Ok((s, _)) => return s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_micros(50)),
                Err(e) => panic!("accept: {e}"),
            }
        }
        panic!("no connection arrived");
    }

    fn read_exact_nb(s: &mut TcpStream, buf: &mut [u8]) {
        let mut at = 0;
        for _ in 0..1_000_000 {
            match s.read(&mut buf[at..]) {
                Ok(0) => panic!("eof"),
                Ok(n) => at += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("read: {e}"),
            }
            if at == buf.len() {
                return;
            }
        }
        panic!("timed out reading");
    }

    fn round_trip(bind: &str) -> Option<()> {
        let listener = match listen(bind.parse().unwrap(), 8) {
            Ok(l) => l,
            // No IPv6 on this machine (e.g. a container without ::1).
            Err(_) if bind.starts_with('[') => return None,
            Err(e) => panic!("listen {bind}: {e}"),
        };
        let addr = listener.local_addr().unwrap();
        let mut a = connect_timeout(addr, Duration::from_secs(5)).unwrap();
        let mut b = accept_blocking(&listener);
        for s in [&a, &b] {
            assert!(s.nodelay().unwrap(), "TCP_NODELAY must be set");
            // Non-blocking: a read with nothing there is WouldBlock, not a wait.
        }
        let mut buf = [0u8; 4];
        assert_eq!(b.read(&mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        a.write_all(b"ping").unwrap();
        read_exact_nb(&mut b, &mut buf);
        assert_eq!(&buf, b"ping");
        // The non-blocking connect reaches the listener too.
        let c = connect(addr).unwrap();
        let _d = accept_blocking(&listener);
        assert!(c.nodelay().unwrap());
        Some(())
    }

    #[test]
    fn ipv4_streams_are_nonblocking_with_nodelay() {
        round_trip("127.0.0.1:0").unwrap();
    }

    #[test]
    fn ipv6_streams_are_nonblocking_with_nodelay() {
        if round_trip("[::1]:0").is_none() {
            eprintln!("skipped: no IPv6 loopback on this machine");
        }
    }

    #[test]
    fn ipv4_and_ipv6_listeners_share_a_port() {
        let v4 = listen("127.0.0.1:0".parse().unwrap(), 8).unwrap();
        let port = v4.local_addr().unwrap().port();
        match listen(format!("[::]:{port}").parse().unwrap(), 8) {
            Ok(v6) => assert_eq!(v6.local_addr().unwrap().port(), port),
            Err(e) if e.kind() == io::ErrorKind::AddrNotAvailable || e.raw_os_error() == Some(97) => {
                eprintln!("skipped: no IPv6 ({e})")
            }
            Err(e) => panic!("an IPv6 listener could not share the IPv4 port: {e}"),
        }
    }

    #[test]
    fn connect_timeout_reports_refusal() {
        // A port nobody listens on: bind one, learn it, close it.
        let port = listen("127.0.0.1:0".parse().unwrap(), 1).unwrap().local_addr().unwrap().port();
        let e = connect_timeout(format!("127.0.0.1:{port}").parse().unwrap(), Duration::from_secs(5)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
    }

    #[test]
    fn configure_fd_sets_nodelay_and_nonblocking() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let s = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        assert!(!s.nodelay().unwrap());
        configure_fd(&s).unwrap();
        assert!(s.nodelay().unwrap());
        let mut s = s;
        assert_eq!(s.read(&mut [0u8; 1]).unwrap_err().kind(), io::ErrorKind::WouldBlock);
    }
}
