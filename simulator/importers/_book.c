/* The compiled twin of book.py's OrderBook: the same L2 book, the same answers.
 *
 * Each side is one array of (price, size) pairs in ascending price order, kept sorted with the
 * same searches as the Python book (bisect_left to find a level, bisect_right to insert one),
 * so the levels, their order and every size are the same doubles the Python book holds: no
 * arithmetic is done on them. An update touches a few levels near the top; a memmove of the
 * levels behind is what it costs. Tests compare both books on the bundled recording.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

typedef struct {
    double px, sz;
} Level;

typedef struct {
    Level *levels;
    Py_ssize_t n, cap;
} Side;

typedef struct {
    PyObject_HEAD
    Side bids, asks; /* both ascending: the best bid is last, the best ask first */
} NativeBook;

static Py_ssize_t bisect_left(const Side *s, double px) {
    Py_ssize_t lo = 0, hi = s->n;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (s->levels[mid].px < px) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

static Py_ssize_t bisect_right(const Side *s, double px) {
    Py_ssize_t lo = 0, hi = s->n;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (px < s->levels[mid].px) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}

static int grow(Side *s) {
    if (s->n < s->cap) return 0;
    Py_ssize_t cap = s->cap ? s->cap * 2 : 256;
    Level *levels = PyMem_Realloc(s->levels, (size_t)cap * sizeof(Level));
    if (levels == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    s->levels = levels;
    s->cap = cap;
    return 0;
}

/* book.py's _set: 1 set, 0 a removal of a level not held, -1 error. A level is found as the
 * dict finds it: equal price (a NaN price never is; it is inserted where insort puts it). */
static int set_level(Side *s, double px, double sz) {
    Py_ssize_t i = bisect_left(s, px);
    int held = i < s->n && s->levels[i].px == px;
    if (sz == 0.0) {
        if (!held) return 0;
        memmove(s->levels + i, s->levels + i + 1, (size_t)(s->n - i - 1) * sizeof(Level));
        s->n--;
        return 1;
    }
    if (held) {
        s->levels[i].sz = sz;
        return 1;
    }
    if (grow(s) < 0) return -1;
    i = bisect_right(s, px);
    memmove(s->levels + i + 1, s->levels + i, (size_t)(s->n - i) * sizeof(Level));
    s->levels[i].px = px;
    s->levels[i].sz = sz;
    s->n++;
    return 1;
}

/* One (price, size) pair of an iterable of levels. */
static int level_of(PyObject *item, double *px, double *sz) {
    PyObject *pair = PySequence_Fast(item, "a book level must be a (price, size) pair");
    if (pair == NULL) return -1;
    if (PySequence_Fast_GET_SIZE(pair) != 2) {
        Py_DECREF(pair);
        PyErr_SetString(PyExc_ValueError, "a book level must be a (price, size) pair");
        return -1;
    }
    *px = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(pair, 0));
    *sz = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(pair, 1));
    Py_DECREF(pair);
    return PyErr_Occurred() ? -1 : 0;
}

/* 1 when the prices of `seq` fall strictly (no NaN, no repeat), 0 when not, -1 on error. */
static int strictly_descending(PyObject *seq, Py_ssize_t n) {
    double prev = 0.0, px, sz;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (level_of(PySequence_Fast_GET_ITEM(seq, i), &px, &sz) < 0) return -1;
        if (i > 0 && !(px < prev)) return 0;
        prev = px;
    }
    return 1;
}

/* Apply levels to a side; `skip_zero`: reset's dict comprehension drops zero sizes. */
static int apply_side(Side *s, PyObject *levels, int skip_zero) {
    PyObject *seq = PySequence_Fast(levels, "book levels must be an iterable of pairs");
    if (seq == NULL) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    /* a snapshot's bids come best (highest) first: inserted from the end, each one goes to
     * the end of the array instead of moving all the others (same result: no two are equal) */
    int backwards = skip_zero && n > 1 && strictly_descending(seq, n);
    if (backwards < 0) goto fail;
    for (Py_ssize_t k = 0; k < n; k++) {
        Py_ssize_t i = backwards ? n - 1 - k : k;
        double px, sz;
        if (level_of(PySequence_Fast_GET_ITEM(seq, i), &px, &sz) < 0) goto fail;
        if (skip_zero && sz == 0.0) continue;
        if (set_level(s, px, sz) < 0) goto fail;
    }
    Py_DECREF(seq);
    return 0;
fail:
    Py_DECREF(seq);
    return -1;
}

static PyObject *NativeBook_reset(NativeBook *self, PyObject *args) {
    PyObject *bids, *asks;
    if (!PyArg_ParseTuple(args, "OO", &bids, &asks)) return NULL;
    self->bids.n = self->asks.n = 0;
    if (apply_side(&self->bids, bids, 1) < 0 || apply_side(&self->asks, asks, 1) < 0) return NULL;
    Py_RETURN_NONE;
}

static PyObject *NativeBook_apply(NativeBook *self, PyObject *args) {
    PyObject *bids, *asks;
    if (!PyArg_ParseTuple(args, "OO", &bids, &asks)) return NULL;
    if (apply_side(&self->bids, bids, 0) < 0 || apply_side(&self->asks, asks, 0) < 0) return NULL;
    Py_RETURN_NONE;
}

static PyObject *NativeBook_set(NativeBook *self, PyObject *args) {
    int is_bid;
    double px, sz;
    if (!PyArg_ParseTuple(args, "pdd", &is_bid, &px, &sz)) return NULL;
    int done = set_level(is_bid ? &self->bids : &self->asks, px, sz);
    if (done < 0) return NULL;
    return PyBool_FromLong(done);
}

static PyObject *NativeBook_best(NativeBook *self, PyObject *Py_UNUSED(ignored)) {
    PyObject *bid = self->bids.n ? PyFloat_FromDouble(self->bids.levels[self->bids.n - 1].px)
                                 : Py_NewRef(Py_None);
    PyObject *ask = self->asks.n ? PyFloat_FromDouble(self->asks.levels[0].px) : Py_NewRef(Py_None);
    if (bid == NULL || ask == NULL) {
        Py_XDECREF(bid);
        Py_XDECREF(ask);
        return NULL;
    }
    return Py_BuildValue("(NN)", bid, ask);
}

static PyObject *NativeBook_size(NativeBook *self, PyObject *args) {
    int is_bid;
    double px;
    if (!PyArg_ParseTuple(args, "pd", &is_bid, &px)) return NULL;
    const Side *s = is_bid ? &self->bids : &self->asks;
    Py_ssize_t i = bisect_left(s, px);
    return PyFloat_FromDouble(i < s->n && s->levels[i].px == px ? s->levels[i].sz : 0.0);
}

/* The i-th best level of a side (best first), or NULL past its end. */
static const Level *nth_best(const Side *s, int is_bid, Py_ssize_t i) {
    if (i >= s->n) return NULL;
    return is_bid ? &s->levels[s->n - 1 - i] : &s->levels[i];
}

static PyObject *NativeBook_top(NativeBook *self, PyObject *args) {
    Py_ssize_t levels;
    if (!PyArg_ParseTuple(args, "n", &levels)) return NULL;
    if (levels < 0) levels = 0;
    PyObject *lists[4] = {NULL, NULL, NULL, NULL};
    for (int side = 0; side < 2; side++) {
        const Side *s = side == 0 ? &self->bids : &self->asks;
        Py_ssize_t n = s->n < levels ? s->n : levels;
        lists[2 * side] = PyList_New(n);
        lists[2 * side + 1] = PyList_New(n);
        if (lists[2 * side] == NULL || lists[2 * side + 1] == NULL) goto fail;
        for (Py_ssize_t i = 0; i < n; i++) {
            const Level *level = nth_best(s, side == 0, i);
            PyObject *px = PyFloat_FromDouble(level->px), *sz = PyFloat_FromDouble(level->sz);
            if (px == NULL || sz == NULL) {
                Py_XDECREF(px);
                Py_XDECREF(sz);
                goto fail;
            }
            PyList_SET_ITEM(lists[2 * side], i, px);
            PyList_SET_ITEM(lists[2 * side + 1], i, sz);
        }
    }
    return Py_BuildValue("(NNNN)", lists[0], lists[1], lists[2], lists[3]);
fail:
    for (int k = 0; k < 4; k++) Py_XDECREF(lists[k]);
    return NULL;
}

static PyObject *NativeBook_top_row(NativeBook *self, PyObject *args) {
    Py_ssize_t levels;
    if (!PyArg_ParseTuple(args, "n", &levels)) return NULL;
    if (levels < 0) levels = 0;
    PyObject *row = PyList_New(4 * levels);
    if (row == NULL) return NULL;
    for (Py_ssize_t i = 0; i < levels; i++) {
        const Level *levels_at[2] = {nth_best(&self->bids, 1, i), nth_best(&self->asks, 0, i)};
        for (int side = 0; side < 2; side++) {
            const Level *level = levels_at[side];
            PyObject *px = level ? PyFloat_FromDouble(level->px) : Py_NewRef(Py_None);
            PyObject *sz = level ? PyFloat_FromDouble(level->sz) : Py_NewRef(Py_None);
            if (px == NULL || sz == NULL) {
                Py_XDECREF(px);
                Py_XDECREF(sz);
                Py_DECREF(row);
                return NULL;
            }
            PyList_SET_ITEM(row, 4 * i + 2 * side, px);
            PyList_SET_ITEM(row, 4 * i + 2 * side + 1, sz);
        }
    }
    return row;
}

static PyObject *NativeBook_depth(NativeBook *self, PyObject *Py_UNUSED(ignored)) {
    return Py_BuildValue("(nn)", self->bids.n, self->asks.n);
}

static void NativeBook_dealloc(NativeBook *self) {
    PyMem_Free(self->bids.levels);
    PyMem_Free(self->asks.levels);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef NativeBook_methods[] = {
    {"reset", (PyCFunction)NativeBook_reset, METH_VARARGS, "Replace the whole book by a snapshot."},
    {"apply", (PyCFunction)NativeBook_apply, METH_VARARGS, "Apply one diff's level changes."},
    {"set", (PyCFunction)NativeBook_set, METH_VARARGS,
     "Set one level; False when it removes a level the book does not hold."},
    {"best", (PyCFunction)NativeBook_best, METH_NOARGS, "(best bid, best ask); None if empty."},
    {"size", (PyCFunction)NativeBook_size, METH_VARARGS, "The size at a price (0 if none)."},
    {"top", (PyCFunction)NativeBook_top, METH_VARARGS,
     "(bid prices, bid sizes, ask prices, ask sizes) of the best levels, best first."},
    {"top_row", (PyCFunction)NativeBook_top_row, METH_VARARGS,
     "The best levels in types.book_columns order; None past a side's last level."},
    {"depth", (PyCFunction)NativeBook_depth, METH_NOARGS, "Number of (bid, ask) levels held."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject NativeBookType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "simulator.importers._book.NativeBook",
    .tp_doc = PyDoc_STR("book.py's OrderBook, compiled: the same levels and answers."),
    .tp_basicsize = sizeof(NativeBook),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)NativeBook_dealloc,
    .tp_methods = NativeBook_methods,
};

static struct PyModuleDef book_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "simulator.importers._book",
    .m_doc = "The compiled L2 order book (see book.py).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__book(void) {
    if (PyType_Ready(&NativeBookType) < 0) return NULL;
    PyObject *module = PyModule_Create(&book_module);
    if (module == NULL) return NULL;
    if (PyModule_AddObjectRef(module, "NativeBook", (PyObject *)&NativeBookType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
