//! The SOCKS5 client side a PT client proxy needs (RFC 1928 CONNECT with
//! RFC 1929 username/password, which carries the bridge arguments).

use std::{io, net::SocketAddr};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const VERSION: u8 = 5;
const NO_AUTH: u8 = 0;
const USER_PASS: u8 = 2;
const CONNECT: u8 = 1;

/// Connects to `target` through the SOCKS5 proxy at `proxy`, passing
/// `args` (the PT arguments, `k=v;k=v`) as the credentials: the first
/// 255 bytes as the username, the rest as the password, as the PT spec
/// says. No arguments: no authentication.
///
/// # Errors
/// If the proxy cannot be reached, refuses, or answers out of protocol.
pub async fn connect(proxy: SocketAddr, target: SocketAddr, args: &str) -> io::Result<TcpStream> {
    if args.len() > 510 {
        return Err(invalid(
            "bridge arguments longer than SOCKS5 can carry (510 bytes)",
        ));
    }
    let mut stream = TcpStream::connect(proxy).await?;
    stream.set_nodelay(true)?;
    let method = if args.is_empty() { NO_AUTH } else { USER_PASS };
    stream.write_all(&[VERSION, 1, method]).await?;
    let mut reply = [0u8; 2];
    stream.read_exact(&mut reply).await?;
    if reply != [VERSION, method] {
        return Err(invalid("the proxy refused our authentication method"));
    }
    if method == USER_PASS {
        let bytes = args.as_bytes();
        let (user, pass) = bytes.split_at(bytes.len().min(255));
        // A password may not be empty: the spec pads it with one NUL.
        let pass: &[u8] = if pass.is_empty() { &[0] } else { pass };
        let mut auth = Vec::with_capacity(3 + user.len() + pass.len());
        auth.push(1);
        auth.push(user.len() as u8);
        auth.extend_from_slice(user);
        auth.push(pass.len() as u8);
        auth.extend_from_slice(pass);
        stream.write_all(&auth).await?;
        stream.read_exact(&mut reply).await?;
        if reply[1] != 0 {
            return Err(invalid("the proxy refused the bridge arguments"));
        }
    }
    let mut request = vec![VERSION, CONNECT, 0];
    match target {
        SocketAddr::V4(a) => {
            request.push(1);
            request.extend_from_slice(&a.ip().octets());
        }
        SocketAddr::V6(a) => {
            request.push(4);
            request.extend_from_slice(&a.ip().octets());
        }
    }
    request.extend_from_slice(&target.port().to_be_bytes());
    stream.write_all(&request).await?;
    let mut head = [0u8; 4];
    stream.read_exact(&mut head).await?;
    if head[0] != VERSION {
        return Err(invalid("the proxy answered out of protocol"));
    }
    if head[1] != 0 {
        return Err(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            format!(
                "the proxy could not reach the bridge (SOCKS5 reply {})",
                head[1]
            ),
        ));
    }
    // The bound address, which we do not need.
    let skip = match head[3] {
        1 => 4 + 2,
        4 => 16 + 2,
        3 => usize::from(stream.read_u8().await?) + 2,
        _ => return Err(invalid("the proxy answered out of protocol")),
    };
    let mut bound = vec![0u8; skip];
    stream.read_exact(&mut bound).await?;
    Ok(stream)
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_owned())
}
