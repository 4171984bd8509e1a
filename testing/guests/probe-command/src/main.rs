//! A WASI command that does one hostile or ordinary thing, named by its
//! first argument, and reports what happened. Success prints the result on
//! stdout; a refused operation prints `denied: <error>` on stderr and exits 1
//! (WASI 0.2 carries only success or failure, so any other code arrives as 1).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use std::process::exit;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let action = args.get(1).map(String::as_str).unwrap_or("");
    let arg = |n: usize| args.get(n).cloned().unwrap_or_default();
    match action {
        "args" => println!("{}", args[1..].join(" ")),
        "echo-stdin" => {
            let mut input = Vec::new();
            std::io::stdin().read_to_end(&mut input).unwrap();
            std::io::stdout().write_all(&input).unwrap();
        }
        "read" => report(std::fs::read_to_string(arg(2))),
        "list" => report(std::fs::read_dir(arg(2)).map(|entries| {
            let mut names: Vec<String> =
                entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
            names.sort();
            names.join("\n")
        })),
        "write" => report(std::fs::write(arg(2), arg(3)).map(|()| "written".to_owned())),
        // Writes, then holds on for a while, so a test can look at the host side mid-call.
        "write-and-sleep" => {
            let written = std::fs::write(arg(2), arg(3));
            std::thread::sleep(std::time::Duration::from_secs(arg(4).parse().unwrap_or(1)));
            report(written.map(|()| "written".to_owned()))
        }
        "append" => report(
            std::fs::OpenOptions::new()
                .append(true)
                .open(arg(2))
                .and_then(|mut f| f.write_all(arg(3).as_bytes()))
                .map(|()| "appended".to_owned()),
        ),
        "remove" => report(std::fs::remove_file(arg(2)).map(|()| "removed".to_owned())),
        "mkdir" => report(std::fs::create_dir(arg(2)).map(|()| "created".to_owned())),
        "rename" => report(std::fs::rename(arg(2), arg(3)).map(|()| "renamed".to_owned())),
        "symlink" => report(symlink(&arg(2), &arg(3)).map(|()| "linked".to_owned())),
        "env" => {
            let mut vars: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
            vars.sort();
            println!("{}", vars.join("\n"));
        }
        "tcp-connect" => report(TcpStream::connect(arg(2)).map(|_| "connected".to_owned())),
        "tcp-listen" => report(TcpListener::bind(arg(2)).map(|_| "listening".to_owned())),
        "udp-bind" => report(UdpSocket::bind(arg(2)).map(|_| "bound".to_owned())),
        "udp-send" => report(
            UdpSocket::bind("0.0.0.0:0")
                .and_then(|socket| socket.send_to(b"probe", arg(2)))
                .map(|n| format!("sent {n}")),
        ),
        "lookup" => report(arg(2).to_socket_addrs().map(|addrs| format!("{:?}", addrs.collect::<Vec<_>>()))),
        "spin" => {
            let mut x: u64 = 0;
            loop {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        "sleep" => {
            std::thread::sleep(std::time::Duration::from_secs(arg(2).parse().unwrap()));
            println!("woke up");
        }
        "alloc" => {
            // Keeps every block so nothing can be reused.
            let mut blocks: Vec<Vec<u8>> = Vec::new();
            loop {
                blocks.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&blocks);
            }
        }
        "recurse" => println!("{}", recurse(std::hint::black_box(u64::MAX))),
        "flood" => {
            let line = "x".repeat(1023) + "\n";
            let mut out = std::io::stdout().lock();
            loop {
                if out.write_all(line.as_bytes()).is_err() {
                    exit(4);
                }
            }
        }
        // http METHOD URL [HEADER:VALUE | body=TEXT]...
        "http" => report(probe_http::request(&arg(2), &arg(3), &args[4.min(args.len())..]).map(|r| r.summary())),
        // Like `http`, then follows one redirect the way a guest would.
        "http-follow" => {
            report(probe_http::request(&arg(2), &arg(3), &[]).and_then(|first| match first.header("location") {
                Some(location) if (300..400).contains(&first.status) => {
                    let second = probe_http::request("GET", &location, &[])?;
                    Ok(format!("{}\nfollowed to {location}\n{}", first.summary(), second.summary()))
                }
                _ => Ok(first.summary()),
            }))
        }
        "stderr" => eprintln!("{}", arg(2)),
        "panic" => panic!("probe panicked on purpose"),
        "exit" => exit(arg(2).parse().unwrap()),
        other => {
            eprintln!("unknown action `{other}`");
            exit(64);
        }
    }
}

/// Recursion whose frames live on the wasm stack (no address-taken locals),
/// so it exhausts the engine's stack limit rather than linear memory.
#[inline(never)]
fn recurse(n: u64) -> u64 {
    if n == 0 { 0 } else { recurse(std::hint::black_box(n - 1)).wrapping_add(std::hint::black_box(n)) }
}

/// Plants a symlink through wasi-libc (std's wasi symlink is unstable).
fn symlink(target: &str, link: &str) -> std::io::Result<()> {
    let target = std::ffi::CString::new(target).unwrap();
    let link = std::ffi::CString::new(link).unwrap();
    // SAFETY: both pointers are valid NUL-terminated strings for the call.
    if unsafe { libc::symlink(target.as_ptr(), link.as_ptr()) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn report(result: std::io::Result<String>) {
    match result {
        Ok(text) => println!("{text}"),
        Err(error) => {
            eprintln!("denied: {error}");
            exit(1);
        }
    }
}
