//! What the medium needs from a byte stream.

use std::io::{Read, Write};
use std::os::fd::AsFd;

/// A non-blocking byte stream a session can run over: `Read` and `Write` that return
/// `WouldBlock` when nothing can be done now, plus two optional socket services.
/// Implemented for `mio` and `std` TCP and Unix-domain streams; a user's own stream
/// (a TLS wrapper, a test pipe) implements it with the defaults.
///
/// ```
/// use tcpshm_transport_tcp::ByteStream;
/// struct Pipe(Vec<u8>);
/// impl std::io::Read for Pipe {
///     fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> { Err(std::io::ErrorKind::WouldBlock.into()) }
/// }
/// impl std::io::Write for Pipe {
///     fn write(&mut self, b: &[u8]) -> std::io::Result<usize> { self.0.extend_from_slice(b); Ok(b.len()) }
///     fn flush(&mut self) -> std::io::Result<()> { Ok(()) }
/// }
/// impl ByteStream for Pipe {}
/// ```
pub trait ByteStream: Read + Write {
    /// Ends this side's direction (a FIN after what was written), best effort, so
    /// that a close frame is not lost to a reset. Default: nothing.
    fn shutdown_write(&mut self) {}

    /// How many bytes the peer sent that wait to be read, if the stream can tell
    /// (`FIONREAD`): a session whose user is not popping uses it to tell a live peer
    /// from a silent one. Default: unknown.
    fn unread(&self) -> Option<usize> {
        None
    }

    /// Makes the stream non-blocking (a session never waits). Default: nothing (the
    /// stream is non-blocking already).
    fn set_nonblocking(&self) -> std::io::Result<()> {
        Ok(())
    }
}

fn shutdown_fd(fd: &impl AsFd) {
    let _ = socket2::SockRef::from(fd).shutdown(std::net::Shutdown::Write);
}

fn unread_fd(fd: &impl AsFd) -> Option<usize> {
    rustix::io::ioctl_fionread(fd).ok().and_then(|n| usize::try_from(n).ok())
}

fn nonblocking_fd(fd: &impl AsFd) -> std::io::Result<()> {
    socket2::SockRef::from(fd).set_nonblocking(true)
}

macro_rules! socket_stream {
    ($($t:ty),*) => {$(
        impl ByteStream for $t {
            fn shutdown_write(&mut self) {
                shutdown_fd(self)
            }
            fn unread(&self) -> Option<usize> {
                unread_fd(self)
            }
            fn set_nonblocking(&self) -> std::io::Result<()> {
                nonblocking_fd(self)
            }
        }
    )*};
}

socket_stream!(mio::net::TcpStream, mio::net::UnixStream, std::net::TcpStream, std::os::unix::net::UnixStream);
