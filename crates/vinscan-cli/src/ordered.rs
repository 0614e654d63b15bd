//! Output in input order while inputs are worked on at once (`extract --parallel`): a reorder
//! buffer of lines, keyed by each input's place in the input order.

use std::collections::BTreeMap;
use std::io::Write;

/// Stdout in input order while inputs are read at once: the lines of the input whose turn it
/// is go out as they are made (a long PDF's pages stream), a later input's are held until
/// every earlier input is done. Written by hand: it is a reorder buffer of a few lines.
pub struct Ordered<W: Write> {
    out: W,
    /// The job whose lines go out as they come.
    next: usize,
    /// Lines of later jobs, and whether each is done.
    held: BTreeMap<usize, (Vec<u8>, bool)>,
}

impl<W: Write> Ordered<W> {
    pub fn new(out: W) -> Self {
        Self {
            out,
            next: 0,
            held: BTreeMap::new(),
        }
    }

    /// The job whose turn it is: its lines go out as they come.
    pub fn turn(&self) -> usize {
        self.next
    }

    /// One line (without its newline) of job `index`.
    pub fn line(&mut self, index: usize, line: &[u8]) -> std::io::Result<()> {
        if index == self.next {
            self.out.write_all(line)?;
            self.out.write_all(b"\n")?;
            return self.out.flush();
        }
        let (held, _) = self.held.entry(index).or_default();
        held.extend_from_slice(line);
        held.push(b'\n');
        Ok(())
    }

    /// Job `index` has no more lines: the jobs after it that are held go out, up to the first
    /// one not done. The turn moves on before each write, so a failed write does not leave
    /// every later job held.
    pub fn done(&mut self, index: usize) -> std::io::Result<()> {
        self.held.entry(index).or_default().1 = true;
        while let Some((lines, done)) = self.held.remove(&self.next) {
            if done {
                self.next += 1;
            }
            self.out.write_all(&lines)?;
            self.out.flush()?;
            if !done {
                // its next lines go straight out
                break;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Ordered;

    fn text(o: &Ordered<Vec<u8>>) -> &str {
        std::str::from_utf8(&o.out).unwrap_or("not UTF-8")
    }

    /// Fails its first write, then takes everything.
    struct FailsOnce {
        failed: bool,
        out: Vec<u8>,
    }

    impl std::io::Write for FailsOnce {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if !self.failed {
                self.failed = true;
                return Err(std::io::Error::other("full"));
            }
            self.out.extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failed_write_passes_the_turn_on() {
        let mut o = Ordered::new(FailsOnce {
            failed: false,
            out: Vec::new(),
        });
        o.line(1, b"b1").expect("held");
        o.done(1).expect("held");
        o.done(0).expect_err("writing input 1's held line fails");
        o.line(2, b"c1").expect("write");
        assert_eq!(o.out.out, b"c1\n", "input 2 is not held behind the line lost");
    }

    #[test]
    fn the_input_whose_turn_it_is_streams_and_later_ones_wait() {
        let mut o = Ordered::new(Vec::new());
        o.line(1, b"b1").expect("write");
        o.line(0, b"a1").expect("write");
        assert_eq!(text(&o), "a1\n", "input 1 waits for input 0");
        o.line(2, b"c1").expect("write");
        o.done(2).expect("write");
        o.line(1, b"b2").expect("write");
        o.line(0, b"a2").expect("write");
        assert_eq!(text(&o), "a1\na2\n");
        o.done(0).expect("write");
        // input 1 is not done: what it has goes out, then its next lines as they come
        assert_eq!(text(&o), "a1\na2\nb1\nb2\n");
        o.line(1, b"b3").expect("write");
        assert_eq!(text(&o), "a1\na2\nb1\nb2\nb3\n");
        o.done(1).expect("write");
        assert_eq!(
            text(&o),
            "a1\na2\nb1\nb2\nb3\nc1\n",
            "input 2 was done and goes out with it"
        );
        assert!(o.held.is_empty());
        assert_eq!(o.next, 3);
    }

    #[test]
    fn inputs_without_lines_keep_their_turn() {
        let mut o = Ordered::new(Vec::new());
        o.line(2, b"c").expect("write");
        o.done(2).expect("write");
        o.done(1).expect("write");
        assert_eq!(text(&o), "", "input 0 is not done");
        o.done(0).expect("write");
        assert_eq!(text(&o), "c\n");
        assert!(o.held.is_empty());
    }
}
