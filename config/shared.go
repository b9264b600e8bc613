package config

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
)

// Shared holds what the stages of one service share across its workers:
// at most one value per chain entry, made by the first worker's builder
// and handed to the others (a router's FIB, neighbor table and kernel
// sync). Values that implement io.Closer are closed by Close, once, after
// the workers are done with them. service.FileSpec makes one per service;
// whoever builds stages with a Shared closes it.
type Shared struct {
	mu     sync.Mutex
	values map[int]any // by chain index
	order  []int       // the order they were made in
	closed bool
}

// NewShared returns an empty Shared.
func NewShared() *Shared { return &Shared{values: map[int]any{}} }

// SharedValue returns the value chain entry sc shares across the
// service's workers: the first call makes it with mk, later ones (other
// workers building the same entry) return the same value. A failed mk is
// not remembered. mk runs with the Shared locked: it must not call
// SharedValue.
//
// Without a Shared (ctx.Shared nil: stages built by hand, or in check
// mode), mk runs on every call and nothing is closed: builders whose
// values hold resources that need closing should refuse to build then.
func SharedValue[T any](ctx *BuildContext, sc *StageConfig, mk func() (T, error)) (T, error) {
	s := ctx.Shared
	if s == nil {
		return mk()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var zero T
	if s.closed {
		return zero, sc.Errorf("", "the service's shared stage state is closed")
	}
	if v, ok := s.values[sc.index]; ok {
		t, ok := v.(T)
		if !ok {
			return zero, sc.Errorf("", "shared state is a %T, not a %T", v, zero)
		}
		return t, nil
	}
	v, err := mk()
	if err != nil {
		return zero, err
	}
	s.values[sc.index] = v
	s.order = append(s.order, sc.index)
	return v, nil
}

// Close closes the values that implement io.Closer, the last made first,
// and forgets them all. Call it once no worker runs the stages.
func (s *Shared) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var errs []error
	for _, i := range slices.Backward(s.order) {
		if c, ok := s.values[i].(io.Closer); ok {
			if err := c.Close(); err != nil {
				errs = append(errs, fmt.Errorf("chain[%d]: %w", i, err))
			}
		}
	}
	s.values, s.order = nil, nil
	return errors.Join(errs...)
}
