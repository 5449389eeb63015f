//! The machine's own limits, measured in the same run as the registries so figures can be read
//! against them: hashing on one core, durable writes to the data directory's disk, and one
//! loopback TCP stream.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::Instant;

use sha2::{Digest as _, Sha256};

use crate::payload::Seeds;

const MB: f64 = 1e6;

/// Throughput limits in MB/s (10^6 bytes per second).
#[derive(Clone, Copy, Debug)]
pub struct Ceilings {
    pub sha256: f64,
    pub disk_durable_write: f64,
    pub loopback: f64,
}

impl Ceilings {
    /// A durable push must receive, hash and persist every byte: the slower of hashing and disk.
    pub fn push(&self) -> f64 {
        self.sha256.min(self.disk_durable_write)
    }

    /// A pull is bytes already on disk (and in cache) crossing the loopback.
    pub fn pull(&self) -> f64 {
        self.loopback
    }
}

/// Sizes of the three measurements, in bytes.
#[derive(Clone)]
pub struct CeilingSizes {
    pub sha256: usize,
    pub disk: u64,
    pub loopback: u64,
}

/// Blocking; run on a blocking thread.
pub fn measure(sizes: &CeilingSizes, dir: &Path, seeds: &mut Seeds) -> anyhow::Result<Ceilings> {
    let data = seeds.bytes(sizes.sha256);
    Ok(Ceilings {
        sha256: sha256_rate(&data),
        disk_durable_write: disk_rate(&data, sizes.disk, dir)?,
        loopback: loopback_rate(&data, sizes.loopback)?,
    })
}

/// Best of two passes over an in-memory buffer on this thread.
fn sha256_rate(data: &[u8]) -> f64 {
    (0..2)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(Sha256::digest(data));
            data.len() as f64 / MB / start.elapsed().as_secs_f64()
        })
        .fold(0.0, f64::max)
}

/// Writes `total` bytes to a new file in `dir` and syncs it; the clock includes the sync.
fn disk_rate(data: &[u8], total: u64, dir: &Path) -> anyhow::Result<f64> {
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    let start = Instant::now();
    let mut written = 0u64;
    while written < total {
        let n = (total - written).min(data.len() as u64) as usize;
        file.write_all(&data[..n])?;
        written += n as u64;
    }
    file.as_file().sync_all()?;
    Ok(total as f64 / MB / start.elapsed().as_secs_f64())
}

/// One TCP stream over 127.0.0.1 with 1 MiB writes and reads, as a registry's blob path would do.
fn loopback_rate(data: &[u8], total: u64) -> anyhow::Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    let chunk = &data[..data.len().min(1 << 20)];
    std::thread::scope(|scope| {
        let sender = scope.spawn(move || -> std::io::Result<()> {
            let mut stream = TcpStream::connect(address)?;
            let mut sent = 0u64;
            while sent < total {
                let n = (total - sent).min(chunk.len() as u64) as usize;
                stream.write_all(&chunk[..n])?;
                sent += n as u64;
            }
            Ok(())
        });
        let (mut stream, _) = listener.accept()?;
        let start = Instant::now();
        let mut buf = vec![0u8; 1 << 20];
        let mut received = 0u64;
        while received < total {
            match stream.read(&mut buf)? {
                0 => anyhow::bail!("loopback stream closed after {received} bytes"),
                n => received += n as u64,
            }
        }
        let rate = total as f64 / MB / start.elapsed().as_secs_f64();
        sender.join().expect("loopback sender panicked")?;
        Ok(rate)
    })
}
