package store

import (
	"strings"
	"time"
)

// Page selects one page of a list, newest first. Either Offset or After is
// used; After (a cursor position) keeps pages stable under inserts.
type Page struct {
	Limit  int
	Offset int
	After  *Position
}

// Position is the sort key of the last row of a page: rows are ordered by
// created_at, then id, both descending.
type Position struct {
	CreatedAt time.Time
	ID        string
}

// where collects the conditions and arguments of a list query.
type where struct {
	conds []string
	args  []any
}

func (w *where) add(cond string, args ...any) {
	w.conds = append(w.conds, cond)
	w.args = append(w.args, args...)
}

func (w *where) sql() string {
	if len(w.conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(w.conds, " AND ")
}

// listQuery appends the page's position, order and limit to a query whose
// table has created_at and id columns. It asks for one row more than the
// limit, so the caller can tell whether more rows follow.
func listQuery(base string, w *where, p Page) (string, []any) {
	if p.After != nil {
		at := ms(p.After.CreatedAt)
		// The created_at <= ? term is what lets both engines start the
		// index range at the cursor; the OR alone would be a filter over
		// every newer row.
		w.add("created_at <= ? AND (created_at < ? OR id < ?)", at, at, p.After.ID)
	}
	q := base + w.sql() + " ORDER BY created_at DESC, id DESC LIMIT ?"
	args := append(w.args, p.Limit+1)
	if p.After == nil && p.Offset > 0 {
		q += " OFFSET ?"
		args = append(args, p.Offset)
	}
	return q, args
}

// trim cuts the extra row listQuery asked for and reports whether it was
// there.
func trim[T any](rows []T, limit int) ([]T, bool) {
	if len(rows) > limit {
		return rows[:limit], true
	}
	return rows, false
}
