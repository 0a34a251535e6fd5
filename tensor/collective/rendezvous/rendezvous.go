// Package rendezvous is the meeting point of a job whose processes were started by a launcher that
// only sets environment variables (torchrun, Slurm's srun, a hand-written script): rank 0 listens at
// MASTER_ADDR:MASTER_PORT, every other rank connects to it, and rank 0 hands each of them the same
// payload — the 128-byte NCCL unique id, from which NCCL builds its own transport. Nothing else of
// the job's traffic goes through it.
//
// The connections stay open for the job's life and serve as its liveness check, the part of a
// rendezvous store that launchers rely on to notice a lost worker: a process that dies (even by
// SIGKILL) has its socket closed by the kernel, so rank 0 sees end-of-file before the goodbye of a
// normal Close, names that rank as lost and tells every other rank; a rank that loses rank 0's
// connection the same way knows rank 0 is gone. Session.Lost delivers these, so a training step
// blocked in a collective can be aborted with the lost rank's name at once, not after a timeout.
//
// The protocol is a few framed messages over TCP: hello (magic, rank, world size), welcome (the
// payload) or refuse (why), lost (a rank), bye. Mismatched world sizes, a rank out of range, a rank
// that joins twice and ranks that do not all join in time are errors that name them.
package rendezvous

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Env is a process's place in the job as the launcher describes it.
type Env struct {
	Rank, Size           int
	LocalRank, LocalSize int
	// Addr is rank 0's host:port (MASTER_ADDR:MASTER_PORT).
	Addr string
	// From names the variables it was read from, for messages ("RANK/WORLD_SIZE" or "SLURM_PROCID/SLURM_NTASKS").
	From string
}

// FromEnv reads the launcher's variables: torchrun's RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
// else Slurm's SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID (local size from SLURM_NTASKS_PER_NODE
// when it is a plain number), and MASTER_ADDR and MASTER_PORT, which both launch styles need (an
// sbatch script exports them). ok is false when neither launcher's variables are set; a variable
// that is set but malformed or inconsistent is an error naming it.
func FromEnv() (e Env, ok bool, err error) {
	get := os.Getenv
	switch {
	case get("RANK") != "" || get("WORLD_SIZE") != "":
		e.From = "RANK/WORLD_SIZE"
		if e.Rank, err = envInt("RANK", -1); err != nil {
			return e, true, err
		}
		if e.Size, err = envInt("WORLD_SIZE", -1); err != nil {
			return e, true, err
		}
		if e.LocalRank, err = envInt("LOCAL_RANK", e.Rank); err != nil {
			return e, true, err
		}
		if e.LocalSize, err = envInt("LOCAL_WORLD_SIZE", e.Size); err != nil {
			return e, true, err
		}
	case get("SLURM_PROCID") != "" && get("SLURM_NTASKS") != "":
		e.From = "SLURM_PROCID/SLURM_NTASKS"
		if e.Rank, err = envInt("SLURM_PROCID", -1); err != nil {
			return e, true, err
		}
		if e.Size, err = envInt("SLURM_NTASKS", -1); err != nil {
			return e, true, err
		}
		if e.LocalRank, err = envInt("SLURM_LOCALID", e.Rank); err != nil {
			return e, true, err
		}
		e.LocalSize = e.Size
		if n, err := strconv.Atoi(get("SLURM_NTASKS_PER_NODE")); err == nil && n > 0 {
			e.LocalSize = n
		}
	default:
		return e, false, nil
	}
	switch {
	case e.Size < 1:
		return e, true, fmt.Errorf("rendezvous: world size %d (%s)", e.Size, e.From)
	case e.Rank < 0 || e.Rank >= e.Size:
		return e, true, fmt.Errorf("rendezvous: rank %d of a world of %d (%s)", e.Rank, e.Size, e.From)
	case e.LocalRank < 0 || e.LocalSize < 1 || e.LocalRank >= e.LocalSize:
		return e, true, fmt.Errorf("rendezvous: local rank %d of %d", e.LocalRank, e.LocalSize)
	}
	host, port := get("MASTER_ADDR"), get("MASTER_PORT")
	if host == "" || port == "" {
		return e, true, fmt.Errorf("rendezvous: %s are set but MASTER_ADDR and MASTER_PORT are not: set them to rank 0's host and a free TCP port (torchrun sets them; in an sbatch script export MASTER_ADDR=$(scontrol show hostnames $SLURM_JOB_NODELIST | head -n 1) and MASTER_PORT=29500)", e.From)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return e, true, fmt.Errorf("rendezvous: MASTER_PORT %q is not a TCP port", port)
	}
	e.Addr = net.JoinHostPort(host, port)
	return e, true, nil
}

func envInt(name string, def int) (int, error) {
	v := os.Getenv(name)
	if v == "" {
		if def < 0 {
			return 0, fmt.Errorf("rendezvous: %s is not set", name)
		}
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("rendezvous: %s=%q is not a non-negative integer", name, v)
	}
	return n, nil
}

// Message types.
const (
	msgHello byte = iota + 1
	msgWelcome
	msgRefuse
	msgLost
	msgBye
)

// magic starts every hello, so a stray client (or another program on the port) is refused.
const magic = "dlf-rendezvous-1"

// maxPayload bounds a message; the payload is 128 bytes.
const maxPayload = 1 << 16

func writeMsg(w io.Writer, typ byte, body []byte) error {
	hdr := make([]byte, 5, 5+len(body))
	hdr[0] = typ
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(body)))
	_, err := w.Write(append(hdr, body...))
	return err
}

func readMsg(r io.Reader) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > maxPayload {
		return 0, nil, fmt.Errorf("rendezvous: message of %d bytes", n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, err
	}
	return hdr[0], body, nil
}

// Session is this rank's membership of the job: the payload, and the liveness of the others.
type Session struct {
	env     Env
	payload []byte
	lost    chan int

	mu      sync.Mutex
	conns   map[int]net.Conn // rank 0: the other ranks'; other ranks: {0: rank 0's}
	closing bool
	gone    []int
	ln      net.Listener
	wg      sync.WaitGroup
}

// Join meets the other ranks. Rank 0 listens on e.Addr's port, waits until every other rank has
// joined and hands each of them payload; the others connect (retrying until rank 0 listens) and
// receive it. Every rank must join within timeout (and ctx).
func Join(ctx context.Context, e Env, payload []byte, timeout time.Duration) (*Session, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	s := &Session{env: e, lost: make(chan int, e.Size), conns: map[int]net.Conn{}}
	var err error
	if e.Rank == 0 {
		err = s.serve(ctx, payload, timeout)
	} else {
		err = s.connect(ctx, timeout)
	}
	if err != nil {
		s.shut()
		return nil, err
	}
	for r, c := range s.conns {
		s.wg.Add(1)
		go s.watch(r, c)
	}
	return s, nil
}

// serve is rank 0's side of Join.
func (s *Session) serve(ctx context.Context, payload []byte, timeout time.Duration) error {
	_, port, err := net.SplitHostPort(s.env.Addr)
	if err != nil {
		return fmt.Errorf("rendezvous: address %q: %v", s.env.Addr, err)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", ":"+port)
	if err != nil {
		return fmt.Errorf("rendezvous: rank 0 cannot listen on port %s (MASTER_PORT): %v", port, err)
	}
	s.ln = ln
	go func() { <-ctx.Done(); _ = ln.Close() }()
	for len(s.conns) < s.env.Size-1 {
		c, err := ln.Accept()
		if err != nil {
			var missing []int
			for r := 1; r < s.env.Size; r++ {
				if s.conns[r] == nil {
					missing = append(missing, r)
				}
			}
			return fmt.Errorf("rendezvous: rank(s) %v did not join rank 0 at %s within %v", missing, s.env.Addr, timeout)
		}
		r, err := s.hello(c)
		if err != nil {
			_ = writeMsg(c, msgRefuse, []byte(err.Error()))
			_ = c.Close()
			fmt.Fprintf(os.Stderr, "rendezvous: refused a connection from %v: %v\n", c.RemoteAddr(), err)
			continue
		}
		s.conns[r] = c
	}
	_ = ln.Close()
	s.ln = nil
	for r := 1; r < s.env.Size; r++ {
		if err := writeMsg(s.conns[r], msgWelcome, payload); err != nil {
			return fmt.Errorf("rendezvous: welcome rank %d: %v", r, err)
		}
	}
	s.payload = payload
	return nil
}

// hello reads and checks a joining rank's hello.
func (s *Session) hello(c net.Conn) (int, error) {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	typ, body, err := readMsg(c)
	if err != nil {
		return 0, fmt.Errorf("no hello: %v", err)
	}
	if typ != msgHello || len(body) != len(magic)+8 || string(body[:len(magic)]) != magic {
		return 0, fmt.Errorf("not a dlf rank (another program on MASTER_PORT?)")
	}
	r := int(binary.BigEndian.Uint32(body[len(magic):]))
	n := int(binary.BigEndian.Uint32(body[len(magic)+4:]))
	switch {
	case n != s.env.Size:
		return 0, fmt.Errorf("rank %d says the world has %d ranks, rank 0 says %d", r, n, s.env.Size)
	case r < 1 || r >= s.env.Size:
		return 0, fmt.Errorf("rank %d is out of range for a world of %d", r, s.env.Size)
	case s.conns[r] != nil:
		return 0, fmt.Errorf("rank %d joined twice (two processes with the same RANK?)", r)
	}
	return r, nil
}

// connect is a non-zero rank's side of Join.
func (s *Session) connect(ctx context.Context, timeout time.Duration) error {
	var d net.Dialer
	var c net.Conn
	var last error
	for c == nil {
		var err error
		if c, err = d.DialContext(ctx, "tcp", s.env.Addr); err == nil {
			break
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("rendezvous: rank %d could not reach rank 0 at %s (MASTER_ADDR:MASTER_PORT) within %v: %v", s.env.Rank, s.env.Addr, timeout, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
	body := []byte(magic)
	body = binary.BigEndian.AppendUint32(body, uint32(s.env.Rank))
	body = binary.BigEndian.AppendUint32(body, uint32(s.env.Size))
	if err := writeMsg(c, msgHello, body); err != nil {
		_ = c.Close()
		return fmt.Errorf("rendezvous: rank %d: hello to %s: %v", s.env.Rank, s.env.Addr, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetReadDeadline(dl)
	}
	typ, payload, err := readMsg(c)
	_ = c.SetReadDeadline(time.Time{})
	switch {
	case err != nil:
		_ = c.Close()
		return fmt.Errorf("rendezvous: rank %d: no answer from rank 0 at %s within %v (are all %d ranks started?): %v", s.env.Rank, s.env.Addr, timeout, s.env.Size, err)
	case typ == msgRefuse:
		_ = c.Close()
		return fmt.Errorf("rendezvous: rank 0 refused rank %d: %s", s.env.Rank, payload)
	case typ != msgWelcome:
		_ = c.Close()
		return fmt.Errorf("rendezvous: rank %d: unexpected message %d from rank 0", s.env.Rank, typ)
	}
	s.payload = payload
	s.conns[0] = c
	return nil
}

// watch reads one connection until bye or its end; an end without bye is a lost rank (r for rank
// 0's view of rank r; for the other ranks, rank 0, or the rank a lost message names).
func (s *Session) watch(r int, c net.Conn) {
	defer s.wg.Done()
	br := bufio.NewReader(c)
	for {
		typ, body, err := readMsg(br)
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if !closing {
				s.markLost(r)
			}
			return
		}
		switch typ {
		case msgBye:
			return
		case msgLost:
			if len(body) == 4 {
				s.markLost(int(binary.BigEndian.Uint32(body)))
			}
		}
	}
}

// markLost records rank r as lost, delivers it on Lost and, on rank 0, tells the other ranks.
func (s *Session) markLost(r int) {
	s.mu.Lock()
	if slices.Contains(s.gone, r) {
		s.mu.Unlock()
		return
	}
	s.gone = append(s.gone, r)
	var tell []net.Conn
	if s.env.Rank == 0 && !s.closing {
		for q, c := range s.conns {
			if q != r {
				tell = append(tell, c)
			}
		}
	}
	s.mu.Unlock()
	for _, c := range tell {
		_ = writeMsg(c, msgLost, binary.BigEndian.AppendUint32(nil, uint32(r)))
	}
	select {
	case s.lost <- r:
	default:
	}
}

// Env is the session's place in the job.
func (s *Session) Env() Env { return s.env }

// Payload is what rank 0 handed out.
func (s *Session) Payload() []byte { return s.payload }

// Lost delivers each rank found lost (its process ended without Close), once.
func (s *Session) Lost() <-chan int { return s.lost }

// LostRanks lists the ranks found lost so far.
func (s *Session) LostRanks() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.gone)
}

// Describe names the lost ranks for an error message ("" when none is known).
func (s *Session) Describe() string {
	g := s.LostRanks()
	if len(g) == 0 {
		return ""
	}
	parts := make([]string, len(g))
	for i, r := range g {
		parts[i] = strconv.Itoa(r)
	}
	return fmt.Sprintf("rank %s lost (its process ended: the rendezvous connection closed without a goodbye)", strings.Join(parts, ", "))
}

// Close says goodbye to the others (so they do not count this rank as lost) and closes the
// connections.
func (s *Session) Close() error {
	s.mu.Lock()
	s.closing = true
	conns := make([]net.Conn, 0, len(s.conns))
	for _, c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	var errs []error
	for _, c := range conns {
		errs = append(errs, writeMsg(c, msgBye, nil))
	}
	s.shut()
	s.wg.Wait()
	return errors.Join(errs...)
}

func (s *Session) shut() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closing = true
	for _, c := range s.conns {
		_ = c.Close()
	}
	if s.ln != nil {
		_ = s.ln.Close()
	}
}
