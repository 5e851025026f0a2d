//! `upload-broker healthcheck`: asks the running service's `/health` on `PORT`, for a
//! container's HEALTHCHECK without a curl in the image.

use std::io::{Read, Write};
use std::process::ExitCode;

/// Exits 0 when the service on `PORT` (5000 when unset) answers 200, 1 otherwise.
pub fn healthcheck() -> ExitCode {
    let port = std::env::var("PORT").unwrap_or_else(|_| "5000".to_owned());
    let answer = (|| -> std::io::Result<String> {
        let addr = format!("127.0.0.1:{port}");
        let timeout = std::time::Duration::from_secs(4);
        let mut stream = std::net::TcpStream::connect_timeout(
            &addr.parse().map_err(std::io::Error::other)?,
            timeout,
        )?;
        stream.set_read_timeout(Some(timeout))?;
        stream.write_all(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        Ok(response)
    })();
    match answer {
        Ok(response)
            if response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200") =>
        {
            ExitCode::SUCCESS
        }
        Ok(response) => {
            eprintln!("unhealthy: {}", response.lines().next().unwrap_or(""));
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("unhealthy: {err}");
            ExitCode::FAILURE
        }
    }
}
