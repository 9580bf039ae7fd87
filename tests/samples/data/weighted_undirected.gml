# Test graph for the GpuBridge samples, written by scripts/samples/make_references.py
graph [
  directed 0
  comment "parallel edges are summed; node 60 is unreachable"
  attributes [ nested [ skipped 1 ] ]
  node [ id 10 label "a" size 2.5 ]
  node [ id 20 label "b" size 2.5 ]
  node [ id 30 label "c" size 2.5 ]
  node [ id 40 label "d" size 2.5 ]
  node [ id 50 label "e" size 2.5 ]
  node [ id 60 label "isolated" size 2.5 ]
  edge [ source 10 target 20 weight 1.5 ]
  edge [ source 20 target 30 weight 2.0 ]
  edge [ source 10 target 30 value 5.0 ]
  edge [ source 30 target 40 weight 0.5 ]
  edge [ source 20 target 10 weight 1.0 ]
  edge [ source 40 target 50 value 3.25 ]
  edge [ source 50 target 50 weight 2.0 ]
  edge [ source 40 target 30 weight 0.25 ]
  edge [ source 10 target 50 weight 10.0 ]
]
