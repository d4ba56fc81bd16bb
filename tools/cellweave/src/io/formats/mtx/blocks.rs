//! The block reader: a thread that reads (and gunzips) the file in large blocks of whole lines.

use super::*;

/// Blocks of whole lines read (and gunzipped) by a background thread.
pub(crate) struct LineBlocks {
    rx: Receiver<std::result::Result<Vec<u8>, String>>,
}

impl LineBlocks {
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let mut r = open_text(path)?;
        let (tx, rx) = sync_channel(2);
        std::thread::spawn(move || {
            let mut carry: Vec<u8> = Vec::new();
            loop {
                let mut block = Vec::with_capacity(BLOCK + carry.len() + 4096);
                block.append(&mut carry);
                let target = block.len() + BLOCK;
                let mut eof = false;
                while block.len() < target {
                    let start = block.len();
                    block.resize(target, 0);
                    match r.read(&mut block[start..]) {
                        Ok(0) => {
                            block.truncate(start);
                            eof = true;
                            break;
                        }
                        Ok(n) => block.truncate(start + n),
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
                            block.truncate(start)
                        }
                        Err(e) => {
                            // Hand over the whole lines read so far, so that the error names the line reached.
                            block.truncate(start);
                            if let Some(p) = block.iter().rposition(|&b| b == b'\n') {
                                block.truncate(p + 1);
                                let _ = tx.send(Ok(block));
                            }
                            let _ = tx.send(Err(e.to_string()));
                            return;
                        }
                    }
                }
                if !eof {
                    match block.iter().rposition(|&b| b == b'\n') {
                        Some(p) => carry.extend_from_slice(&block[p + 1..]),
                        None => {
                            // A line longer than a block: keep reading into it.
                            carry = block;
                            continue;
                        }
                    }
                    let keep = block.len() - carry.len();
                    block.truncate(keep);
                }
                if tx.send(Ok(block)).is_err() || eof {
                    return;
                }
            }
        });
        Ok(LineBlocks { rx })
    }
}

impl Iterator for LineBlocks {
    type Item = std::result::Result<Vec<u8>, String>;
    fn next(&mut self) -> Option<Self::Item> {
        self.rx.recv().ok()
    }
}
