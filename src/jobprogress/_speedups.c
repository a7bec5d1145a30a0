/* Optional accelerator for the tracker's hot path: a counter base class whose advance() is a C method.
 *
 * Tracker subclasses CounterBase, so t.advance() costs one C call. Anything that is not a plain
 * non-negative int that keeps the count within 2**63-1 goes to the Python method _advance_slow, which
 * accepts int subclasses and raises the library's errors with their messages. Under the GIL the update
 * is atomic, so threads sharing a tracker never lose counts. The pure-Python fallback in _counter.py
 * has the same behaviour.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

typedef struct {
    PyObject_HEAD
    long long done;
} CounterObject;

static PyObject *
slow_path(PyObject *self, PyObject *arg)
{
    return PyObject_CallMethod(self, "_advance_slow", "O", arg);
}

static PyObject *
Counter_advance(CounterObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *arg = NULL;
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    if (nargs + nkw > 1) {
        PyErr_SetString(PyExc_TypeError, "advance() takes at most one argument, n");
        return NULL;
    }
    if (nkw == 1) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, 0);
        if (!PyUnicode_Check(name) || PyUnicode_CompareWithASCIIString(name, "n") != 0) {
            PyErr_Format(PyExc_TypeError, "advance() got an unexpected keyword argument %R", name);
            return NULL;
        }
        arg = args[0];
    }
    else if (nargs == 1) {
        arg = args[0];
    }
    long long n = 1;
    if (arg != NULL) {
        if (!PyLong_CheckExact(arg)) {
            return slow_path((PyObject *)self, arg);
        }
        int overflow = 0;
        n = PyLong_AsLongLongAndOverflow(arg, &overflow);
        if (overflow != 0 || n < 0) {
            return slow_path((PyObject *)self, arg);
        }
        if (n == -1 && PyErr_Occurred()) {
            return NULL;
        }
    }
    if (n > LLONG_MAX - self->done) {
        if (arg != NULL) {
            return slow_path((PyObject *)self, arg);
        }
        PyObject *one = PyLong_FromLongLong(1);
        if (one == NULL) {
            return NULL;
        }
        PyObject *result = slow_path((PyObject *)self, one);
        Py_DECREF(one);
        return result;
    }
    self->done += n;
    Py_RETURN_NONE;
}

static PyMethodDef Counter_methods[] = {
    {"advance", (PyCFunction)(void (*)(void))Counter_advance, METH_FASTCALL | METH_KEYWORDS,
     "advance(n=1)\n--\n\nAdd n finished items. Hot path: counters only."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Counter_members[] = {
    {"_done", T_LONGLONG, offsetof(CounterObject, done), 0, "items done (raw counter)"},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot Counter_slots[] = {
    {Py_tp_methods, Counter_methods},
    {Py_tp_members, Counter_members},
    {Py_tp_doc, "Counter base of Tracker (C accelerated)."},
    {0, NULL},
};

static PyType_Spec Counter_spec = {
    .name = "jobprogress._speedups.CounterBase",
    .basicsize = sizeof(CounterObject),
    .itemsize = 0,
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .slots = Counter_slots,
};

static int
speedups_exec(PyObject *module)
{
    PyObject *type = PyType_FromSpec(&Counter_spec);
    if (type == NULL) {
        return -1;
    }
    if (PyModule_AddObject(module, "CounterBase", type) < 0) {
        Py_DECREF(type);
        return -1;
    }
    return 0;
}

static PyModuleDef_Slot speedups_slots[] = {
    {Py_mod_exec, speedups_exec},
    {0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "jobprogress._speedups",
    .m_doc = "C accelerator for the tracker hot path.",
    .m_size = 0,
    .m_slots = speedups_slots,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModuleDef_Init(&speedups_module);
}
