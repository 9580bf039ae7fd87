import sys,collections
d=collections.defaultdict(list)
for l in sys.stdin:
  p=l.split()
  if len(p)<2: continue
  n=p[0]
  for i,v in enumerate(p[1:]):
    x=float(v[:-1])*(1e3 if v[-1]=='k' else 1e6)/1e6
    d[(n,i)].append(x)
for (n,i),v in sorted(d.items(), key=lambda t:(t[0][1],t[0][0])):
  v.sort(); print(n, i, ' '.join('%.3f'%x for x in v), 'median %.3f'%v[len(v)//2])
