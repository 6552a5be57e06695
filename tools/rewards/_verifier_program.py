"""The checking program the execution verifier runs in the sandbox (kept apart: it is data for
the sandbox, not code of this process)."""

# The one program a call runs in the sandbox. It reads a job on stdin, evaluates expressions by
# walking their syntax tree (numbers, + - * / // % **; exact fractions; sizes capped) and runs each
# code block as a child with its own deadline, so a block can neither fake, hide nor hold up the
# rest. Result lines start with a random mark the blocks never see.
PROGRAM = r'''
import ast, concurrent.futures, ctypes, json, os, signal, subprocess, sys, tempfile, threading
from fractions import Fraction
try:
    ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # not dumpable: blocks cannot reach us through /proc
except Exception:
    pass
job, lock = json.loads(sys.stdin.read()), threading.Lock()

class Refused(Exception):
    pass

def bits(x):
    return max(abs(x.numerator).bit_length(), x.denominator.bit_length()) if isinstance(x, Fraction) else 64

def power(a, b):
    if isinstance(b, Fraction) and b.denominator == 1:
        if abs(a) not in (0, 1) and bits(a) * abs(b.numerator) > job["max_bits"]:
            raise Refused("an exponent too large to check")
        return a ** int(b)
    if isinstance(r := float(a) ** float(b), complex):
        raise Refused("not a real number")
    return r

OPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
       ast.Div: lambda a, b: a / b, ast.FloorDiv: lambda a, b: a // b, ast.Mod: lambda a, b: a % b,
       ast.Pow: power}

def ev(node, src):
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return Fraction(ast.get_source_segment(src, node))  # the literal as written, exactly
    if isinstance(node, ast.UnaryOp) and type(node.op) in (ast.UAdd, ast.USub):
        return -ev(node.operand, src) if isinstance(node.op, ast.USub) else ev(node.operand, src)
    if not (isinstance(node, ast.BinOp) and type(node.op) in OPS):
        raise Refused("not plain arithmetic")
    x = OPS[type(node.op)](ev(node.left, src), ev(node.right, src))
    if bits(x) > job["max_bits"] or x != x or x in (float("inf"), float("-inf")):
        raise Refused("a number too large to check")
    return x

def value(src):
    try:
        v = ev(ast.parse(src, mode="eval").body, src)
    except ZeroDivisionError:
        return {"e": "division by zero", "undefined": True}
    except Exception as e:
        return {"e": str(e) if isinstance(e, Refused) else type(e).__name__}
    return {"f": repr(v)} if isinstance(v, float) else {"n": str(v.numerator), "d": str(v.denominator)}

def emit(obj):
    with lock:
        sys.stdout.write(job["mark"] + json.dumps(obj) + "\n")
        sys.stdout.flush()

def read(path, n):
    with open(path, "rb") as f:
        f.seek(max(0, os.path.getsize(path) - n) if n > 0 else 0)
        return f.read(abs(n)).decode("utf-8", "replace")

def run(item):
    i, d = item[0], tempfile.mkdtemp()
    with open(d + "/block.py", "w", encoding="utf-8", errors="replace") as f:
        f.write(item[1])
    try:
        with open(d + "/out", "wb") as out, open(d + "/err", "wb") as err:
            p = subprocess.Popen([sys.executable, "-I", "block.py"], cwd=d, stdin=subprocess.DEVNULL,
                                 stdout=out, stderr=err, start_new_session=True)
    except OSError as e:
        return emit({"block": i, "error": f"could not start ({e})"})
    try:
        late = p.wait(job["timeout"]) is None
    except subprocess.TimeoutExpired:
        late = True
    try:
        os.killpg(p.pid, signal.SIGKILL)  # the block, or whatever it left running
    except OSError:
        pass
    rc = p.wait()
    emit({"block": i, "exit": rc if rc >= 0 else None, "signal": -rc if rc < 0 else None,
          "timed_out": late, "stdout": read(d + "/out", -400), "stderr": read(d + "/err", 800)})

emit({"values": [value(s) for s in job["expressions"]]})
with concurrent.futures.ThreadPoolExecutor(job["parallel"]) as pool:
    list(pool.map(run, enumerate(job["code"])))
'''
