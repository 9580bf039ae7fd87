import re,glob,collections,sys
rows=collections.defaultdict(lambda: collections.defaultdict(list))
for f in sorted(glob.glob('./*.txt')):
    m=re.match(r'.*/(\w+?)_(base|new)_(\d)\.txt',f)
    if not m: continue
    kind,v,alt=m.groups()
    if kind=='mixed': continue
    for line in open(f):
        mm=re.match(r'(\S+)_median\s+([\d.]+) (\w+)\s.*?items_per_second=([\d.]+)([kM]?)/s',line)
        if mm:
            name,t,unit,ips,suf=mm.groups()
            ips=float(ips)*{'k':1e3,'M':1e6,'':1}[suf]
            rows[(kind,name)][v].append(ips)
        else:
            mm=re.match(r'(\S+)_median\s+([\d.]+) (\w+)\s',line)
            if mm:
                name,t,unit=mm.groups()
                rows[(kind,name)][v].append(float(t)*{'ns':1e-9,'us':1e-6,'ms':1e-3}[unit]*-1)
for (kind,name),d in sorted(rows.items()):
    def fmt(xs):
        if not xs: return '-'
        if xs[0]<0: return ' '.join('%.0fns'%(-x*1e9) for x in xs)
        return ' '.join('%.3fus'%(1e6/x) for x in xs) if 'grain_batch' in name else ' '.join('%.2fM/s'%(x/1e6) for x in xs)
    print('%-10s %-48s base: %-30s new: %s'%(kind,name,fmt(d['base']),fmt(d['new'])))
