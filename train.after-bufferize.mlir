#map = affine_map<(d0, d1, d2) -> (d0, d1)>
#map1 = affine_map<(d0, d1, d2) -> (d1, d2)>
#map2 = affine_map<(d0, d1, d2) -> (d0, d2)>
#map3 = affine_map<(d0, d1) -> (d1)>
#map4 = affine_map<(d0, d1) -> (d0, d1)>
#map5 = affine_map<(d0, d1) -> (d0)>
#map6 = affine_map<(d0, d1) -> ()>
#map7 = affine_map<(d0, d1) -> (d0, 0)>
#map8 = affine_map<(d0) -> (d0)>
#map9 = affine_map<(d0) -> ()>
#map10 = affine_map<() -> ()>
#map11 = affine_map<(d0, d1) -> (d1, d0)>
#map12 = affine_map<(d0, d1, d2) -> (d1, d0)>
module {
  memref.global "private" constant @__constant_xf32_3 : memref<f32> = dense<1.000000e+00> {alignment = 64 : i64}
  memref.global "private" constant @__constant_xf32_2 : memref<f32> = dense<-3.906250e-03> {alignment = 64 : i64}
  memref.global "private" constant @__constant_xf32_1 : memref<f32> = dense<0.000000e+00> {alignment = 64 : i64}
  memref.global "private" constant @__constant_xf32_0 : memref<f32> = dense<0x7F800000> {alignment = 64 : i64}
  memref.global "private" constant @__constant_xf32 : memref<f32> = dense<3.906250e-03> {alignment = 64 : i64}
  func.func private @train_step_impl(%arg0: memref<256x2xf32> {llvm.noalias, llvm.readonly}, %arg1: memref<256xi32> {llvm.noalias, llvm.readonly}, %arg2: memref<2x32xf32> {llvm.noalias, llvm.readonly}, %arg3: memref<32xf32> {llvm.noalias, llvm.readonly}, %arg4: memref<32x32xf32> {llvm.noalias, llvm.readonly}, %arg5: memref<32xf32> {llvm.noalias, llvm.readonly}, %arg6: memref<32x2xf32> {llvm.noalias, llvm.readonly}, %arg7: memref<2xf32> {llvm.noalias, llvm.readonly}, %arg8: memref<f32> {llvm.noalias, llvm.readonly}, %arg9: memref<f32> {llvm.noalias}, %arg10: memref<2x32xf32> {llvm.noalias}, %arg11: memref<32xf32> {llvm.noalias}, %arg12: memref<32x32xf32> {llvm.noalias}, %arg13: memref<32xf32> {llvm.noalias}, %arg14: memref<32x2xf32> {llvm.noalias}, %arg15: memref<2xf32> {llvm.noalias}) {
    %cst = arith.constant 0x7FC00000 : f32
    %cst_0 = arith.constant 0x7F800000 : f32
    %cst_1 = arith.constant -5.000000e-01 : f32
    %cst_2 = arith.constant 0.333333313 : f32
    %cst_3 = arith.constant -0.24999994 : f32
    %cst_4 = arith.constant 0.200007141 : f32
    %cst_5 = arith.constant -0.166680574 : f32
    %cst_6 = arith.constant 0.142493233 : f32
    %cst_7 = arith.constant -0.12420141 : f32
    %cst_8 = arith.constant 0.116769984 : f32
    %cst_9 = arith.constant -0.115146101 : f32
    %cst_10 = arith.constant 0.0703768358 : f32
    %cst_11 = arith.constant 0.707106769 : f32
    %c1056964608_i32 = arith.constant 1056964608 : i32
    %c-2139095041_i32 = arith.constant -2139095041 : i32
    %c126_i32 = arith.constant 126 : i32
    %c255_i32 = arith.constant 255 : i32
    %c-23_i32 = arith.constant -23 : i32
    %c0_i32 = arith.constant 0 : i32
    %cst_12 = arith.constant 0x4B000000 : f32
    %cst_13 = arith.constant 1.17549435E-38 : f32
    %cst_14 = arith.constant 0.000000e+00 : f64
    %cst_15 = arith.constant 0xFF800000 : f32
    %cst_16 = arith.constant 6.250000e-01 : f32
    %c23_i32 = arith.constant 23 : i32
    %c127_i32 = arith.constant 127 : i32
    %c1_i32 = arith.constant 1 : i32
    %cst_17 = arith.constant 0.166666657 : f32
    %cst_18 = arith.constant 0.0416657962 : f32
    %cst_19 = arith.constant 0.00833345205 : f32
    %cst_20 = arith.constant 0.00139819994 : f32
    %cst_21 = arith.constant 1.98756912E-4 : f32
    %cst_22 = arith.constant -2.12194442E-4 : f32
    %cst_23 = arith.constant 0.693359375 : f32
    %cst_24 = arith.constant 5.000000e-01 : f32
    %cst_25 = arith.constant 1.44269502 : f32
    %cst_26 = arith.constant 8.900000e+01 : f32
    %cst_27 = arith.constant -1.040000e+02 : f32
    %cst_28 = arith.constant -0.333332807 : f32
    %cst_29 = arith.constant 0.133314416 : f32
    %cst_30 = arith.constant -0.0537397154 : f32
    %cst_31 = arith.constant 0.020639088 : f32
    %cst_32 = arith.constant -0.00570498873 : f32
    %cst_33 = arith.constant 2.000000e+00 : f32
    %cst_34 = arith.constant 1.000000e+00 : f32
    %cst_35 = arith.constant 0.000000e+00 : f32
    %alloc = memref.alloc() {alignment = 64 : i64} : memref<256x32xf32>
    linalg.fill ins(%cst_35 : f32) outs(%alloc : memref<256x32xf32>)
    linalg.contract indexing_maps = [#map, #map1, #map2] {kiln.contraction = 0 : i64} ins(%arg0, %arg2 : memref<256x2xf32>, memref<2x32xf32>) outs(%alloc : memref<256x32xf32>)
    %alloc_36 = memref.alloc() {alignment = 64 : i64} : memref<256x32xf32>
    linalg.generic {indexing_maps = [#map3, #map4], iterator_types = ["parallel", "parallel"]} ins(%arg3 : memref<32xf32>) outs(%alloc_36 : memref<256x32xf32>) {
    ^bb0(%in: f32, %out: f32):
      linalg.yield %in : f32
    }
    %alloc_37 = memref.alloc() {alignment = 64 : i64} : memref<256x32xf32>
    linalg.generic {indexing_maps = [#map4, #map4, #map4], iterator_types = ["parallel", "parallel"]} ins(%alloc, %alloc_36 : memref<256x32xf32>, memref<256x32xf32>) outs(%alloc_37 : memref<256x32xf32>) {
    ^bb0(%in: f32, %in_127: f32, %out: f32):
      %5 = arith.addf %in, %in_127 : f32
      linalg.yield %5 : f32
    }
    %alloc_38 = memref.alloc() {alignment = 64 : i64} : memref<256x32xf32>
    linalg.generic {indexing_maps = [#map4, #map4], iterator_types = ["parallel", "parallel"]} ins(%alloc_37 : memref<256x32xf32>) outs(%alloc_38 : memref<256x32xf32>) {
    ^bb0(%in: f32, %out: f32):
      %5 = math.absf %in : f32
      %6 = arith.addf %5, %5 : f32
      %7 = arith.mulf %in, %in : f32
      %8 = arith.mulf %7, %cst_32 fastmath<contract> : f32
      %9 = arith.addf %8, %cst_31 fastmath<contract> : f32
      %10 = arith.mulf %9, %7 fastmath<contract> : f32
      %11 = arith.addf %10, %cst_30 fastmath<contract> : f32
      %12 = arith.mulf %11, %7 fastmath<contract> : f32
      %13 = arith.addf %12, %cst_29 fastmath<contract> : f32
      %14 = arith.mulf %13, %7 fastmath<contract> : f32
      %15 = arith.addf %14, %cst_28 fastmath<contract> : f32
      %16 = arith.mulf %15, %7 : f32
      %17 = arith.mulf %16, %in fastmath<contract> : f32
      %18 = arith.addf %17, %in fastmath<contract> : f32
      %19 = math.copysign %18, %in : f32
      %20 = arith.maximumf %6, %cst_27 : f32
      %21 = arith.minimumf %20, %cst_26 : f32
      %22 = arith.mulf %21, %cst_25 fastmath<contract> : f32
      %23 = arith.addf %22, %cst_24 fastmath<contract> : f32
      %24 = math.floor %23 : f32
      %25 = arith.mulf %24, %cst_23 : f32
      %26 = arith.subf %21, %25 : f32
      %27 = arith.mulf %24, %cst_22 : f32
      %28 = arith.subf %26, %27 : f32
      %29 = arith.mulf %28, %cst_21 fastmath<contract> : f32
      %30 = arith.addf %29, %cst_20 fastmath<contract> : f32
      %31 = arith.mulf %30, %28 fastmath<contract> : f32
      %32 = arith.addf %31, %cst_19 fastmath<contract> : f32
      %33 = arith.mulf %32, %28 fastmath<contract> : f32
      %34 = arith.addf %33, %cst_18 fastmath<contract> : f32
      %35 = arith.mulf %34, %28 fastmath<contract> : f32
      %36 = arith.addf %35, %cst_17 fastmath<contract> : f32
      %37 = arith.mulf %36, %28 fastmath<contract> : f32
      %38 = arith.addf %37, %cst_24 fastmath<contract> : f32
      %39 = arith.mulf %28, %28 : f32
      %40 = arith.mulf %38, %39 fastmath<contract> : f32
      %41 = arith.addf %40, %28 fastmath<contract> : f32
      %42 = arith.addf %41, %cst_34 : f32
      %43 = arith.fptosi %24 : f32 to i32
      %44 = arith.shrsi %43, %c1_i32 : i32
      %45 = arith.subi %43, %44 : i32
      %46 = arith.addi %44, %c127_i32 : i32
      %47 = arith.shli %46, %c23_i32 : i32
      %48 = arith.bitcast %47 : i32 to f32
      %49 = arith.addi %45, %c127_i32 : i32
      %50 = arith.shli %49, %c23_i32 : i32
      %51 = arith.bitcast %50 : i32 to f32
      %52 = arith.mulf %42, %48 : f32
      %53 = arith.mulf %52, %51 : f32
      %54 = arith.cmpf uno, %6, %6 : f32
      %55 = arith.select %54, %6, %53 : f32
      %56 = arith.addf %55, %cst_34 : f32
      %57 = arith.divf %cst_33, %56 : f32
      %58 = arith.subf %cst_34, %57 : f32
      %59 = math.copysign %58, %in : f32
      %60 = arith.cmpf olt, %5, %cst_16 : f32
      %61 = arith.select %60, %19, %59 : f32
      %62 = arith.cmpf uno, %in, %in : f32
      %63 = arith.select %62, %in, %61 : f32
      linalg.yield %63 : f32
    }
    %alloc_39 = memref.alloc() {alignment = 64 : i64} : memref<256x32xf32>
    linalg.fill ins(%cst_35 : f32) outs(%alloc_39 : memref<256x32xf32>)
    linalg.contract indexing_maps = [#map, #map1, #map2] {kiln.contraction = 1 : i64} ins(%alloc_38, %arg4 : memref<256x32xf32>, memref<32x32xf32>) outs(%alloc_39 : memref<256x32xf32>)
    %alloc_40 = memref.alloc() {alignment = 64 : i64} : memref<256x32xf32>
    linalg.generic {indexing_maps = [#map3, #map4], iterator_types = ["parallel", "parallel"]} ins(%arg5 : memref<32xf32>) outs(%alloc_40 : memref<256x32xf32>) {
    ^bb0(%in: f32, %out: f32):
      linalg.yield %in : f32
    }
    %alloc_41 = memref.alloc() {alignment = 64 : i64} : memref<256x32xf32>
    linalg.generic {indexing_maps = [#map4, #map4, #map4], iterator_types = ["parallel", "parallel"]} ins(%alloc_39, %alloc_40 : memref<256x32xf32>, memref<256x32xf32>) outs(%alloc_41 : memref<256x32xf32>) {
    ^bb0(%in: f32, %in_127: f32, %out: f32):
      %5 = arith.addf %in, %in_127 : f32
      linalg.yield %5 : f32
    }
    %alloc_42 = memref.alloc() {alignment = 64 : i64} : memref<256x32xf32>
    linalg.generic {indexing_maps = [#map4, #map4], iterator_types = ["parallel", "parallel"]} ins(%alloc_41 : memref<256x32xf32>) outs(%alloc_42 : memref<256x32xf32>) {
    ^bb0(%in: f32, %out: f32):
      %5 = math.absf %in : f32
      %6 = arith.addf %5, %5 : f32
      %7 = arith.mulf %in, %in : f32
      %8 = arith.mulf %7, %cst_32 fastmath<contract> : f32
      %9 = arith.addf %8, %cst_31 fastmath<contract> : f32
      %10 = arith.mulf %9, %7 fastmath<contract> : f32
      %11 = arith.addf %10, %cst_30 fastmath<contract> : f32
      %12 = arith.mulf %11, %7 fastmath<contract> : f32
      %13 = arith.addf %12, %cst_29 fastmath<contract> : f32
      %14 = arith.mulf %13, %7 fastmath<contract> : f32
      %15 = arith.addf %14, %cst_28 fastmath<contract> : f32
      %16 = arith.mulf %15, %7 : f32
      %17 = arith.mulf %16, %in fastmath<contract> : f32
      %18 = arith.addf %17, %in fastmath<contract> : f32
      %19 = math.copysign %18, %in : f32
      %20 = arith.maximumf %6, %cst_27 : f32
      %21 = arith.minimumf %20, %cst_26 : f32
      %22 = arith.mulf %21, %cst_25 fastmath<contract> : f32
      %23 = arith.addf %22, %cst_24 fastmath<contract> : f32
      %24 = math.floor %23 : f32
      %25 = arith.mulf %24, %cst_23 : f32
      %26 = arith.subf %21, %25 : f32
      %27 = arith.mulf %24, %cst_22 : f32
      %28 = arith.subf %26, %27 : f32
      %29 = arith.mulf %28, %cst_21 fastmath<contract> : f32
      %30 = arith.addf %29, %cst_20 fastmath<contract> : f32
      %31 = arith.mulf %30, %28 fastmath<contract> : f32
      %32 = arith.addf %31, %cst_19 fastmath<contract> : f32
      %33 = arith.mulf %32, %28 fastmath<contract> : f32
      %34 = arith.addf %33, %cst_18 fastmath<contract> : f32
      %35 = arith.mulf %34, %28 fastmath<contract> : f32
      %36 = arith.addf %35, %cst_17 fastmath<contract> : f32
      %37 = arith.mulf %36, %28 fastmath<contract> : f32
      %38 = arith.addf %37, %cst_24 fastmath<contract> : f32
      %39 = arith.mulf %28, %28 : f32
      %40 = arith.mulf %38, %39 fastmath<contract> : f32
      %41 = arith.addf %40, %28 fastmath<contract> : f32
      %42 = arith.addf %41, %cst_34 : f32
      %43 = arith.fptosi %24 : f32 to i32
      %44 = arith.shrsi %43, %c1_i32 : i32
      %45 = arith.subi %43, %44 : i32
      %46 = arith.addi %44, %c127_i32 : i32
      %47 = arith.shli %46, %c23_i32 : i32
      %48 = arith.bitcast %47 : i32 to f32
      %49 = arith.addi %45, %c127_i32 : i32
      %50 = arith.shli %49, %c23_i32 : i32
      %51 = arith.bitcast %50 : i32 to f32
      %52 = arith.mulf %42, %48 : f32
      %53 = arith.mulf %52, %51 : f32
      %54 = arith.cmpf uno, %6, %6 : f32
      %55 = arith.select %54, %6, %53 : f32
      %56 = arith.addf %55, %cst_34 : f32
      %57 = arith.divf %cst_33, %56 : f32
      %58 = arith.subf %cst_34, %57 : f32
      %59 = math.copysign %58, %in : f32
      %60 = arith.cmpf olt, %5, %cst_16 : f32
      %61 = arith.select %60, %19, %59 : f32
      %62 = arith.cmpf uno, %in, %in : f32
      %63 = arith.select %62, %in, %61 : f32
      linalg.yield %63 : f32
    }
    %alloc_43 = memref.alloc() {alignment = 64 : i64} : memref<256x2xf32>
    linalg.fill ins(%cst_35 : f32) outs(%alloc_43 : memref<256x2xf32>)
    linalg.contract indexing_maps = [#map, #map1, #map2] {kiln.contraction = 2 : i64} ins(%alloc_42, %arg6 : memref<256x32xf32>, memref<32x2xf32>) outs(%alloc_43 : memref<256x2xf32>)
    %alloc_44 = memref.alloc() {alignment = 64 : i64} : memref<256x2xf32>
    linalg.generic {indexing_maps = [#map3, #map4], iterator_types = ["parallel", "parallel"]} ins(%arg7 : memref<2xf32>) outs(%alloc_44 : memref<256x2xf32>) {
    ^bb0(%in: f32, %out: f32):
      linalg.yield %in : f32
    }
    %alloc_45 = memref.alloc() {alignment = 64 : i64} : memref<256x2xf32>
    linalg.generic {indexing_maps = [#map4, #map4, #map4], iterator_types = ["parallel", "parallel"]} ins(%alloc_43, %alloc_44 : memref<256x2xf32>, memref<256x2xf32>) outs(%alloc_45 : memref<256x2xf32>) {
    ^bb0(%in: f32, %in_127: f32, %out: f32):
      %5 = arith.addf %in, %in_127 : f32
      linalg.yield %5 : f32
    }
    %alloc_46 = memref.alloc() {alignment = 64 : i64} : memref<256xf32>
    linalg.fill ins(%cst_15 : f32) outs(%alloc_46 : memref<256xf32>)
    linalg.generic {indexing_maps = [#map4, #map5], iterator_types = ["parallel", "reduction"]} ins(%alloc_45 : memref<256x2xf32>) outs(%alloc_46 : memref<256xf32>) {
    ^bb0(%in: f32, %out: f32):
      %5 = arith.maximumf %out, %in : f32
      linalg.yield %5 : f32
    }
    %expand_shape = memref.expand_shape %alloc_46 [[0, 1]] output_shape [256, 1] : memref<256xf32> into memref<256x1xf32>
    %alloc_47 = memref.alloc() {alignment = 64 : i64} : memref<256x1xf32>
    linalg.generic {indexing_maps = [#map4, #map4], iterator_types = ["parallel", "parallel"]} ins(%expand_shape : memref<256x1xf32>) outs(%alloc_47 : memref<256x1xf32>) {
    ^bb0(%in: f32, %out: f32):
      %5 = math.absf %in : f32
      linalg.yield %5 : f32
    }
    %0 = memref.get_global @__constant_xf32_0 : memref<f32>
    %alloc_48 = memref.alloc() {alignment = 64 : i64} : memref<256x1xf32>
    linalg.generic {indexing_maps = [#map6, #map4], iterator_types = ["parallel", "parallel"]} ins(%0 : memref<f32>) outs(%alloc_48 : memref<256x1xf32>) {
    ^bb0(%in: f32, %out: f32):
      linalg.yield %in : f32
    }
    %alloc_49 = memref.alloc() {alignment = 64 : i64} : memref<256x1xi1>
    linalg.generic {indexing_maps = [#map4, #map4, #map4], iterator_types = ["parallel", "parallel"]} ins(%alloc_47, %alloc_48 : memref<256x1xf32>, memref<256x1xf32>) outs(%alloc_49 : memref<256x1xi1>) {
    ^bb0(%in: f32, %in_127: f32, %out: i1):
      %5 = arith.cmpf olt, %in, %in_127 : f32
      linalg.yield %5 : i1
    }
    %1 = memref.get_global @__constant_xf32_1 : memref<f32>
    %alloc_50 = memref.alloc() {alignment = 64 : i64} : memref<256x1xf32>
    linalg.generic {indexing_maps = [#map6, #map4], iterator_types = ["parallel", "parallel"]} ins(%1 : memref<f32>) outs(%alloc_50 : memref<256x1xf32>) {
    ^bb0(%in: f32, %out: f32):
      linalg.yield %in : f32
    }
    %alloc_51 = memref.alloc() {alignment = 64 : i64} : memref<256x1xf32>
    linalg.generic {indexing_maps = [#map4, #map4, #map4, #map4], iterator_types = ["parallel", "parallel"]} ins(%alloc_49, %expand_shape, %alloc_50 : memref<256x1xi1>, memref<256x1xf32>, memref<256x1xf32>) outs(%alloc_51 : memref<256x1xf32>) {
    ^bb0(%in: i1, %in_127: f32, %in_128: f32, %out: f32):
      %5 = arith.select %in, %in_127, %in_128 : f32
      linalg.yield %5 : f32
    }
    %alloc_52 = memref.alloc() {alignment = 64 : i64} : memref<256x2xf32>
    linalg.generic {indexing_maps = [#map7, #map4], iterator_types = ["parallel", "parallel"]} ins(%alloc_51 : memref<256x1xf32>) outs(%alloc_52 : memref<256x2xf32>) {
    ^bb0(%in: f32, %out: f32):
      linalg.yield %in : f32
    }
    %alloc_53 = memref.alloc() {alignment = 64 : i64} : memref<256x2xf32>
    linalg.generic {indexing_maps = [#map4, #map4, #map4], iterator_types = ["parallel", "parallel"]} ins(%alloc_45, %alloc_52 : memref<256x2xf32>, memref<256x2xf32>) outs(%alloc_53 : memref<256x2xf32>) {
    ^bb0(%in: f32, %in_127: f32, %out: f32):
      %5 = arith.subf %in, %in_127 : f32
      linalg.yield %5 : f32
    }
    %alloc_54 = memref.alloc() {alignment = 64 : i64} : memref<256x2xf32>
    linalg.generic {indexing_maps = [#map4, #map4], iterator_types = ["parallel", "parallel"]} ins(%alloc_53 : memref<256x2xf32>) outs(%alloc_54 : memref<256x2xf32>) {
    ^bb0(%in: f32, %out: f32):
      %5 = arith.maximumf %in, %cst_27 : f32
      %6 = arith.minimumf %5, %cst_26 : f32
      %7 = arith.mulf %6, %cst_25 fastmath<contract> : f32
      %8 = arith.addf %7, %cst_24 fastmath<contract> : f32
      %9 = math.floor %8 : f32
      %10 = arith.mulf %9, %cst_23 : f32
      %11 = arith.subf %6, %10 : f32
      %12 = arith.mulf %9, %cst_22 : f32
      %13 = arith.subf %11, %12 : f32
      %14 = arith.mulf %13, %cst_21 fastmath<contract> : f32
      %15 = arith.addf %14, %cst_20 fastmath<contract> : f32
      %16 = arith.mulf %15, %13 fastmath<contract> : f32
      %17 = arith.addf %16, %cst_19 fastmath<contract> : f32
      %18 = arith.mulf %17, %13 fastmath<contract> : f32
      %19 = arith.addf %18, %cst_18 fastmath<contract> : f32
      %20 = arith.mulf %19, %13 fastmath<contract> : f32
      %21 = arith.addf %20, %cst_17 fastmath<contract> : f32
      %22 = arith.mulf %21, %13 fastmath<contract> : f32
      %23 = arith.addf %22, %cst_24 fastmath<contract> : f32
      %24 = arith.mulf %13, %13 : f32
      %25 = arith.mulf %23, %24 fastmath<contract> : f32
      %26 = arith.addf %25, %13 fastmath<contract> : f32
      %27 = arith.addf %26, %cst_34 : f32
      %28 = arith.fptosi %9 : f32 to i32
      %29 = arith.shrsi %28, %c1_i32 : i32
      %30 = arith.subi %28, %29 : i32
      %31 = arith.addi %29, %c127_i32 : i32
      %32 = arith.shli %31, %c23_i32 : i32
      %33 = arith.bitcast %32 : i32 to f32
      %34 = arith.addi %30, %c127_i32 : i32
      %35 = arith.shli %34, %c23_i32 : i32
      %36 = arith.bitcast %35 : i32 to f32
      %37 = arith.mulf %27, %33 : f32
      %38 = arith.mulf %37, %36 : f32
      %39 = arith.cmpf uno, %in, %in : f32
      %40 = arith.select %39, %in, %38 : f32
      linalg.yield %40 : f32
    }
    %alloc_55 = memref.alloc() {alignment = 64 : i64} : memref<256xf64>
    linalg.fill ins(%cst_14 : f64) outs(%alloc_55 : memref<256xf64>)
    linalg.generic {indexing_maps = [#map4, #map5], iterator_types = ["parallel", "reduction"]} ins(%alloc_54 : memref<256x2xf32>) outs(%alloc_55 : memref<256xf64>) {
    ^bb0(%in: f32, %out: f64):
      %5 = arith.extf %in : f32 to f64
      %6 = arith.addf %out, %5 : f64
      linalg.yield %6 : f64
    }
    %alloc_56 = memref.alloc() {alignment = 64 : i64} : memref<256xf32>
    linalg.generic {indexing_maps = [#map8, #map8], iterator_types = ["parallel"]} ins(%alloc_55 : memref<256xf64>) outs(%alloc_56 : memref<256xf32>) {
    ^bb0(%in: f64, %out: f32):
      %5 = arith.truncf %in : f64 to f32
      linalg.yield %5 : f32
    }
    %expand_shape_57 = memref.expand_shape %alloc_56 [[0, 1]] output_shape [256, 1] : memref<256xf32> into memref<256x1xf32>
    %alloc_58 = memref.alloc() {alignment = 64 : i64} : memref<256x1xf32>
    linalg.generic {indexing_maps = [#map4, #map4], iterator_types = ["parallel", "parallel"]} ins(%expand_shape_57 : memref<256x1xf32>) outs(%alloc_58 : memref<256x1xf32>) {
    ^bb0(%in: f32, %out: f32):
      %5 = arith.cmpf olt, %in, %cst_13 : f32
      %6 = arith.mulf %in, %cst_12 : f32
      %7 = arith.select %5, %6, %in : f32
      %8 = arith.select %5, %c-23_i32, %c0_i32 : i32
      %9 = arith.bitcast %7 : f32 to i32
      %10 = arith.shrui %9, %c23_i32 : i32
      %11 = arith.andi %10, %c255_i32 : i32
      %12 = arith.subi %11, %c126_i32 : i32
      %13 = arith.addi %12, %8 : i32
      %14 = arith.andi %9, %c-2139095041_i32 : i32
      %15 = arith.ori %14, %c1056964608_i32 : i32
      %16 = arith.bitcast %15 : i32 to f32
      %17 = arith.cmpf olt, %16, %cst_11 : f32
      %18 = arith.addf %16, %16 : f32
      %19 = arith.select %17, %18, %16 : f32
      %20 = arith.subf %19, %cst_34 : f32
      %21 = arith.subi %13, %c1_i32 : i32
      %22 = arith.select %17, %21, %13 : i32
      %23 = arith.sitofp %22 : i32 to f32
      %24 = arith.mulf %20, %20 : f32
      %25 = arith.mulf %20, %cst_10 fastmath<contract> : f32
      %26 = arith.addf %25, %cst_9 fastmath<contract> : f32
      %27 = arith.mulf %26, %20 fastmath<contract> : f32
      %28 = arith.addf %27, %cst_8 fastmath<contract> : f32
      %29 = arith.mulf %28, %20 fastmath<contract> : f32
      %30 = arith.addf %29, %cst_7 fastmath<contract> : f32
      %31 = arith.mulf %30, %20 fastmath<contract> : f32
      %32 = arith.addf %31, %cst_6 fastmath<contract> : f32
      %33 = arith.mulf %32, %20 fastmath<contract> : f32
      %34 = arith.addf %33, %cst_5 fastmath<contract> : f32
      %35 = arith.mulf %34, %20 fastmath<contract> : f32
      %36 = arith.addf %35, %cst_4 fastmath<contract> : f32
      %37 = arith.mulf %36, %20 fastmath<contract> : f32
      %38 = arith.addf %37, %cst_3 fastmath<contract> : f32
      %39 = arith.mulf %38, %20 fastmath<contract> : f32
      %40 = arith.addf %39, %cst_2 fastmath<contract> : f32
      %41 = arith.mulf %40, %20 : f32
      %42 = arith.mulf %41, %24 : f32
      %43 = arith.mulf %24, %cst_1 fastmath<contract> : f32
      %44 = arith.addf %43, %42 fastmath<contract> : f32
      %45 = arith.mulf %23, %cst_22 fastmath<contract> : f32
      %46 = arith.addf %45, %44 fastmath<contract> : f32
      %47 = arith.addf %20, %46 : f32
      %48 = arith.mulf %23, %cst_23 fastmath<contract> : f32
      %49 = arith.addf %48, %47 fastmath<contract> : f32
      %50 = arith.cmpf oeq, %in, %cst_35 : f32
      %51 = arith.select %50, %cst_15, %49 : f32
      %52 = arith.cmpf oeq, %in, %cst_0 : f32
      %53 = arith.select %52, %cst_0, %51 : f32
      %54 = arith.cmpf olt, %in, %cst_35 : f32
      %55 = arith.select %54, %cst, %53 : f32
      %56 = arith.cmpf uno, %in, %in : f32
      %57 = arith.select %56, %in, %55 : f32
      linalg.yield %57 : f32
    }
    %alloc_59 = memref.alloc() {alignment = 64 : i64} : memref<256x1xf32>
    linalg.generic {indexing_maps = [#map4, #map4, #map4], iterator_types = ["parallel", "parallel"]} ins(%alloc_51, %alloc_58 : memref<256x1xf32>, memref<256x1xf32>) outs(%alloc_59 : memref<256x1xf32>) {
    ^bb0(%in: f32, %in_127: f32, %out: f32):
      %5 = arith.addf %in, %in_127 : f32
      linalg.yield %5 : f32
    }
    %collapse_shape = memref.collapse_shape %alloc_59 [[0, 1]] : memref<256x1xf32> into memref<256xf32>
    %alloc_60 = memref.alloc() {alignment = 64 : i64} : memref<256x2xi32>
    linalg.generic {indexing_maps = [#map5, #map4], iterator_types = ["parallel", "parallel"]} ins(%arg1 : memref<256xi32>) outs(%alloc_60 : memref<256x2xi32>) {
    ^bb0(%in: i32, %out: i32):
      linalg.yield %in : i32
    }
    %alloc_61 = memref.alloc() {alignment = 64 : i64} : memref<256x2xi32>
    linalg.generic {indexing_maps = [#map4], iterator_types = ["parallel", "parallel"]} outs(%alloc_61 : memref<256x2xi32>) {
    ^bb0(%out: i32):
      %5 = linalg.index 1 : index
      %6 = arith.index_cast %5 : index to i64
      %7 = arith.trunci %6 : i64 to i32
      linalg.yield %7 : i32
    }
    %alloc_62 = memref.alloc() {alignment = 64 : i64} : memref<256x2xi1>
    linalg.generic {indexing_maps = [#map4, #map4, #map4], iterator_types = ["parallel", "parallel"]} ins(%alloc_60, %alloc_61 : memref<256x2xi32>, memref<256x2xi32>) outs(%alloc_62 : memref<256x2xi1>) {
    ^bb0(%in: i32, %in_127: i32, %out: i1):
      %5 = arith.cmpi eq, %in, %in_127 : i32
      linalg.yield %5 : i1
    }
    %alloc_63 = memref.alloc() {alignment = 64 : i64} : memref<256x2xf32>
    linalg.generic {indexing_maps = [#map4, #map4], iterator_types = ["parallel", "parallel"]} ins(%alloc_62 : memref<256x2xi1>) outs(%alloc_63 : memref<256x2xf32>) {
    ^bb0(%in: i1, %out: f32):
      %5 = arith.uitofp %in : i1 to f32
      linalg.yield %5 : f32
    }
    %alloc_64 = memref.alloc() {alignment = 64 : i64} : memref<256x2xf32>
    linalg.generic {indexing_maps = [#map4, #map4, #map4], iterator_types = ["parallel", "parallel"]} ins(%alloc_45, %alloc_63 : memref<256x2xf32>, memref<256x2xf32>) outs(%alloc_64 : memref<256x2xf32>) {
    ^bb0(%in: f32, %in_127: f32, %out: f32):
      %5 = arith.mulf %in, %in_127 : f32
      linalg.yield %5 : f32
    }
    %alloc_65 = memref.alloc() {alignment = 64 : i64} : memref<256xf64>
    linalg.fill ins(%cst_14 : f64) outs(%alloc_65 : memref<256xf64>)
    linalg.generic {indexing_maps = [#map4, #map5], iterator_types = ["parallel", "reduction"]} ins(%alloc_64 : memref<256x2xf32>) outs(%alloc_65 : memref<256xf64>) {
    ^bb0(%in: f32, %out: f64):
      %5 = arith.extf %in : f32 to f64
      %6 = arith.addf %out, %5 : f64
      linalg.yield %6 : f64
    }
    %alloc_66 = memref.alloc() {alignment = 64 : i64} : memref<256xf32>
    linalg.generic {indexing_maps = [#map8, #map8], iterator_types = ["parallel"]} ins(%alloc_65 : memref<256xf64>) outs(%alloc_66 : memref<256xf32>) {
    ^bb0(%in: f64, %out: f32):
      %5 = arith.truncf %in : f64 to f32
      linalg.yield %5 : f32
    }
    %alloc_67 = memref.alloc() {alignment = 64 : i64} : memref<256xf32>
    linalg.generic {indexing_maps = [#map8, #map8, #map8], iterator_types = ["parallel"]} ins(%collapse_shape, %alloc_66 : memref<256xf32>, memref<256xf32>) outs(%alloc_67 : memref<256xf32>) {
    ^bb0(%in: f32, %in_127: f32, %out: f32):
      %5 = arith.subf %in, %in_127 : f32
      linalg.yield %5 : f32
    }
    %alloc_68 = memref.alloc() {alignment = 64 : i64} : memref<f64>
    linalg.fill ins(%cst_14 : f64) outs(%alloc_68 : memref<f64>)
    linalg.generic {indexing_maps = [#map8, #map9], iterator_types = ["reduction"]} ins(%alloc_67 : memref<256xf32>) outs(%alloc_68 : memref<f64>) {
    ^bb0(%in: f32, %out: f64):
      %5 = arith.extf %in : f32 to f64
      %6 = arith.addf %out, %5 : f64
      linalg.yield %6 : f64
    }
    %alloc_69 = memref.alloc() {alignment = 64 : i64} : memref<f32>
    linalg.generic {indexing_maps = [#map10, #map10], iterator_types = []} ins(%alloc_68 : memref<f64>) outs(%alloc_69 : memref<f32>) {
    ^bb0(%in: f64, %out: f32):
      %5 = arith.truncf %in : f64 to f32
      linalg.yield %5 : f32
    }
    %2 = memref.get_global @__constant_xf32 : memref<f32>
    linalg.generic {indexing_maps = [#map10, #map10, #map10], iterator_types = []} ins(%alloc_69, %2 : memref<f32>, memref<f32>) outs(%arg9 : memref<f32>) {
    ^bb0(%in: f32, %in_127: f32, %out: f32):
      %5 = arith.mulf %in, %in_127 : f32
      linalg.yield %5 : f32
    }
    %3 = memref.get_global @__constant_xf32_2 : memref<f32>
    %alloc_70 = memref.alloc() {alignment = 64 : i64} : memref<256x2xf32>
    linalg.generic {indexing_maps = [#map6, #map4], iterator_types = ["parallel", "parallel"]} ins(%3 : memref<f32>) outs(%alloc_70 : memref<256x2xf32>) {
    ^bb0(%in: f32, %out: f32):
      linalg.yield %in : f32
    }
    %alloc_71 = memref.alloc() {alignment = 64 : i64} : memref<256x2xf32>
    linalg.generic {indexing_maps = [#map4, #map4, #map4], iterator_types = ["parallel", "parallel"]} ins(%alloc_63, %alloc_70 : memref<256x2xf32>, memref<256x2xf32>) outs(%alloc_71 : memref<256x2xf32>) {
    ^bb0(%in: f32, %in_127: f32, %out: f32):
      %5 = arith.mulf %in, %in_127 : f32
      linalg.yield %5 : f32
    }
    %alloc_72 = memref.alloc() {alignment = 64 : i64} : memref<256x1xf32>
    linalg.generic {indexing_maps = [#map6, #map4], iterator_types = ["parallel", "parallel"]} ins(%2 : memref<f32>) outs(%alloc_72 : memref<256x1xf32>) {
    ^bb0(%in: f32, %out: f32):
      linalg.yield %in : f32
    }
    %4 = memref.get_global @__constant_xf32_3 : memref<f32>
    %alloc_73 = memref.alloc() {alignment = 64 : i64} : memref<256x1xf32>
    linalg.generic {indexing_maps = [#map6, #map4], iterator_types = ["parallel", "parallel"]} ins(%4 : memref<f32>) outs(%alloc_73 : memref<256x1xf32>) {
    ^bb0(%in: f32, %out: f32):
      linalg.yield %in : f32
    }
    %alloc_74 = memref.alloc() {alignment = 64 : i64} : memref<256x1xf32>
    linalg.generic {indexing_maps = [#map4, #map4, #map4], iterator_types = ["parallel", "parallel"]} ins(%alloc_73, %expand_shape_57 : memref<256x1xf32>, memref<256x1xf32>) outs(%alloc_74 : memref<256x1xf32>) {
    ^bb0(%in: f32, %in_127: f32, %out: f32):
      %5 = arith.divf %in, %in_127 : f32
      linalg.yield %5 : f32
    }
    %alloc_75 = memref.alloc() {alignment = 64 : i64} : memref<256x1xf32>
    linalg.generic {indexing_maps = [#map4, #map4, #map4], iterator_types = ["parallel", "parallel"]} ins(%alloc_72, %alloc_74 : memref<256x1xf32>, memref<256x1xf32>) outs(%alloc_75 : memref<256x1xf32>) {
    ^bb0(%in: f32, %in_127: f32, %out: f32):
      %5 = arith.mulf %in, %in_127 : f32
      linalg.yield %5 : f32
    }
    %collapse_shape_76 = memref.collapse_shape %alloc_75 [[0, 1]] : memref<256x1xf32> into memref<256xf32>
    %alloc_77 = memref.alloc() {alignment = 64 : i64} : memref<256x2xf32>
    linalg.generic {indexing_maps = [#map5, #map4], iterator_types = ["parallel", "parallel"]} ins(%collapse_shape_76 : memref<256xf32>) outs(%alloc_77 : memref<256x2xf32>) {
    ^bb0(%in: f32, %out: f32):
      linalg.yield %in : f32
    }
    %alloc_78 = memref.alloc() {alignment = 64 : i64} : memref<256x2xf32>
    linalg.generic {indexing_maps = [#map4, #map4, #map4], iterator_types = ["parallel", "parallel"]} ins(%alloc_54, %alloc_77 : memref<256x2xf32>, memref<256x2xf32>) outs(%alloc_78 : memref<256x2xf32>) {
    ^bb0(%in: f32, %in_127: f32, %out: f32):
      %5 = arith.mulf %in, %in_127 : f32
      linalg.yield %5 : f32
    }
    %alloc_79 = memref.alloc() {alignment = 64 : i64} : memref<256x2xf32>
    linalg.generic {indexing_maps = [#map4, #map4, #map4], iterator_types = ["parallel", "parallel"]} ins(%alloc_71, %alloc_78 : memref<256x2xf32>, memref<256x2xf32>) outs(%alloc_79 : memref<256x2xf32>) {
    ^bb0(%in: f32, %in_127: f32, %out: f32):
      %5 = arith.addf %in, %in_127 : f32
      linalg.yield %5 : f32
    }
    %alloc_80 = memref.alloc() {alignment = 64 : i64} : memref<256x2xf32>
    linalg.generic {indexing_maps = [#map5, #map4], iterator_types = ["parallel", "parallel"]} ins(%alloc_46 : memref<256xf32>) outs(%alloc_80 : memref<256x2xf32>) {
    ^bb0(%in: f32, %out: f32):
      linalg.yield %in : f32
    }
    %alloc_81 = memref.alloc() {alignment = 64 : i64} : memref<256x2xi1>
    linalg.generic {indexing_maps = [#map4, #map4, #map4], iterator_types = ["parallel", "parallel"]} ins(%alloc_45, %alloc_80 : memref<256x2xf32>, memref<256x2xf32>) outs(%alloc_81 : memref<256x2xi1>) {
    ^bb0(%in: f32, %in_127: f32, %out: i1):
      %5 = arith.cmpf oeq, %in, %in_127 : f32
      linalg.yield %5 : i1
    }
    %alloc_82 = memref.alloc() {alignment = 64 : i64} : memref<256x2xf32>
    linalg.generic {indexing_maps = [#map4, #map4], iterator_types = ["parallel", "parallel"]} ins(%alloc_81 : memref<256x2xi1>) outs(%alloc_82 : memref<256x2xf32>) {
    ^bb0(%in: i1, %out: f32):
      %5 = arith.uitofp %in : i1 to f32
      linalg.yield %5 : f32
    }
    %alloc_83 = memref.alloc() {alignment = 64 : i64} : memref<256x2xf32>
    linalg.generic {indexing_maps = [#map4, #map4], iterator_types = ["parallel", "parallel"]} ins(%alloc_78 : memref<256x2xf32>) outs(%alloc_83 : memref<256x2xf32>) {
    ^bb0(%in: f32, %out: f32):
      %5 = arith.negf %in : f32
      linalg.yield %5 : f32
    }
    %alloc_84 = memref.alloc() {alignment = 64 : i64} : memref<256xf64>
    linalg.fill ins(%cst_14 : f64) outs(%alloc_84 : memref<256xf64>)
    linalg.generic {indexing_maps = [#map4, #map5], iterator_types = ["parallel", "reduction"]} ins(%alloc_83 : memref<256x2xf32>) outs(%alloc_84 : memref<256xf64>) {
    ^bb0(%in: f32, %out: f64):
      %5 = arith.extf %in : f32 to f64
      %6 = arith.addf %out, %5 : f64
      linalg.yield %6 : f64
    }
    %alloc_85 = memref.alloc() {alignment = 64 : i64} : memref<256xf32>
    linalg.generic {indexing_maps = [#map8, #map8], iterator_types = ["parallel"]} ins(%alloc_84 : memref<256xf64>) outs(%alloc_85 : memref<256xf32>) {
    ^bb0(%in: f64, %out: f32):
      %5 = arith.truncf %in : f64 to f32
      linalg.yield %5 : f32
    }
    %expand_shape_86 = memref.expand_shape %alloc_85 [[0, 1]] output_shape [256, 1] : memref<256xf32> into memref<256x1xf32>
    %alloc_87 = memref.alloc() {alignment = 64 : i64} : memref<256x1xf32>
    linalg.generic {indexing_maps = [#map4, #map4, #map4], iterator_types = ["parallel", "parallel"]} ins(%alloc_72, %expand_shape_86 : memref<256x1xf32>, memref<256x1xf32>) outs(%alloc_87 : memref<256x1xf32>) {
    ^bb0(%in: f32, %in_127: f32, %out: f32):
      %5 = arith.addf %in, %in_127 : f32
      linalg.yield %5 : f32
    }
    %alloc_88 = memref.alloc() {alignment = 64 : i64} : memref<256x1xf32>
    linalg.generic {indexing_maps = [#map4, #map4, #map4, #map4], iterator_types = ["parallel", "parallel"]} ins(%alloc_49, %alloc_87, %alloc_50 : memref<256x1xi1>, memref<256x1xf32>, memref<256x1xf32>) outs(%alloc_88 : memref<256x1xf32>) {
    ^bb0(%in: i1, %in_127: f32, %in_128: f32, %out: f32):
      %5 = arith.select %in, %in_127, %in_128 : f32
      linalg.yield %5 : f32
    }
    %collapse_shape_89 = memref.collapse_shape %alloc_88 [[0, 1]] : memref<256x1xf32> into memref<256xf32>
    %alloc_90 = memref.alloc() {alignment = 64 : i64} : memref<256xf64>
    linalg.fill ins(%cst_14 : f64) outs(%alloc_90 : memref<256xf64>)
    linalg.generic {indexing_maps = [#map4, #map5], iterator_types = ["parallel", "reduction"]} ins(%alloc_82 : memref<256x2xf32>) outs(%alloc_90 : memref<256xf64>) {
    ^bb0(%in: f32, %out: f64):
      %5 = arith.extf %in : f32 to f64
      %6 = arith.addf %out, %5 : f64
      linalg.yield %6 : f64
    }
    %alloc_91 = memref.alloc() {alignment = 64 : i64} : memref<256xf32>
    linalg.generic {indexing_maps = [#map8, #map8], iterator_types = ["parallel"]} ins(%alloc_90 : memref<256xf64>) outs(%alloc_91 : memref<256xf32>) {
    ^bb0(%in: f64, %out: f32):
      %5 = arith.truncf %in : f64 to f32
      linalg.yield %5 : f32
    }
    %alloc_92 = memref.alloc() {alignment = 64 : i64} : memref<256xf32>
    linalg.generic {indexing_maps = [#map8, #map8, #map8], iterator_types = ["parallel"]} ins(%collapse_shape_89, %alloc_91 : memref<256xf32>, memref<256xf32>) outs(%alloc_92 : memref<256xf32>) {
    ^bb0(%in: f32, %in_127: f32, %out: f32):
      %5 = arith.divf %in, %in_127 : f32
      linalg.yield %5 : f32
    }
    %alloc_93 = memref.alloc() {alignment = 64 : i64} : memref<256x2xf32>
    linalg.generic {indexing_maps = [#map5, #map4], iterator_types = ["parallel", "parallel"]} ins(%alloc_92 : memref<256xf32>) outs(%alloc_93 : memref<256x2xf32>) {
    ^bb0(%in: f32, %out: f32):
      linalg.yield %in : f32
    }
    %alloc_94 = memref.alloc() {alignment = 64 : i64} : memref<256x2xf32>
    linalg.generic {indexing_maps = [#map4, #map4, #map4], iterator_types = ["parallel", "parallel"]} ins(%alloc_82, %alloc_93 : memref<256x2xf32>, memref<256x2xf32>) outs(%alloc_94 : memref<256x2xf32>) {
    ^bb0(%in: f32, %in_127: f32, %out: f32):
      %5 = arith.mulf %in, %in_127 : f32
      linalg.yield %5 : f32
    }
    %alloc_95 = memref.alloc() {alignment = 64 : i64} : memref<256x2xf32>
    linalg.generic {indexing_maps = [#map4, #map4, #map4], iterator_types = ["parallel", "parallel"]} ins(%alloc_79, %alloc_94 : memref<256x2xf32>, memref<256x2xf32>) outs(%alloc_95 : memref<256x2xf32>) {
    ^bb0(%in: f32, %in_127: f32, %out: f32):
      %5 = arith.addf %in, %in_127 : f32
      linalg.yield %5 : f32
    }
    %alloc_96 = memref.alloc() {alignment = 64 : i64} : memref<2x32xf32>
    linalg.generic {indexing_maps = [#map11, #map4], iterator_types = ["parallel", "parallel"]} ins(%arg6 : memref<32x2xf32>) outs(%alloc_96 : memref<2x32xf32>) {
    ^bb0(%in: f32, %out: f32):
      linalg.yield %in : f32
    }
    %alloc_97 = memref.alloc() {alignment = 64 : i64} : memref<256x32xf32>
    linalg.fill ins(%cst_35 : f32) outs(%alloc_97 : memref<256x32xf32>)
    linalg.contract indexing_maps = [#map, #map1, #map2] {kiln.contraction = 3 : i64} ins(%alloc_95, %alloc_96 : memref<256x2xf32>, memref<2x32xf32>) outs(%alloc_97 : memref<256x32xf32>)
    %alloc_98 = memref.alloc() {alignment = 64 : i64} : memref<256x32xf32>
    linalg.generic {indexing_maps = [#map6, #map4], iterator_types = ["parallel", "parallel"]} ins(%4 : memref<f32>) outs(%alloc_98 : memref<256x32xf32>) {
    ^bb0(%in: f32, %out: f32):
      linalg.yield %in : f32
    }
    %alloc_99 = memref.alloc() {alignment = 64 : i64} : memref<256x32xf32>
    linalg.generic {indexing_maps = [#map4, #map4, #map4], iterator_types = ["parallel", "parallel"]} ins(%alloc_42, %alloc_42 : memref<256x32xf32>, memref<256x32xf32>) outs(%alloc_99 : memref<256x32xf32>) {
    ^bb0(%in: f32, %in_127: f32, %out: f32):
      %5 = arith.mulf %in, %in_127 : f32
      linalg.yield %5 : f32
    }
    %alloc_100 = memref.alloc() {alignment = 64 : i64} : memref<256x32xf32>
    linalg.generic {indexing_maps = [#map4, #map4, #map4], iterator_types = ["parallel", "parallel"]} ins(%alloc_98, %alloc_99 : memref<256x32xf32>, memref<256x32xf32>) outs(%alloc_100 : memref<256x32xf32>) {
    ^bb0(%in: f32, %in_127: f32, %out: f32):
      %5 = arith.subf %in, %in_127 : f32
      linalg.yield %5 : f32
    }
    %alloc_101 = memref.alloc() {alignment = 64 : i64} : memref<256x32xf32>
    linalg.generic {indexing_maps = [#map4, #map4, #map4], iterator_types = ["parallel", "parallel"]} ins(%alloc_97, %alloc_100 : memref<256x32xf32>, memref<256x32xf32>) outs(%alloc_101 : memref<256x32xf32>) {
    ^bb0(%in: f32, %in_127: f32, %out: f32):
      %5 = arith.mulf %in, %in_127 : f32
      linalg.yield %5 : f32
    }
    %alloc_102 = memref.alloc() {alignment = 64 : i64} : memref<32x32xf32>
    linalg.generic {indexing_maps = [#map11, #map4], iterator_types = ["parallel", "parallel"]} ins(%arg4 : memref<32x32xf32>) outs(%alloc_102 : memref<32x32xf32>) {
    ^bb0(%in: f32, %out: f32):
      linalg.yield %in : f32
    }
    %alloc_103 = memref.alloc() {alignment = 64 : i64} : memref<256x32xf32>
    linalg.fill ins(%cst_35 : f32) outs(%alloc_103 : memref<256x32xf32>)
    linalg.contract indexing_maps = [#map, #map1, #map2] {kiln.contraction = 4 : i64} ins(%alloc_101, %alloc_102 : memref<256x32xf32>, memref<32x32xf32>) outs(%alloc_103 : memref<256x32xf32>)
    %alloc_104 = memref.alloc() {alignment = 64 : i64} : memref<256x32xf32>
    linalg.generic {indexing_maps = [#map4, #map4, #map4], iterator_types = ["parallel", "parallel"]} ins(%alloc_38, %alloc_38 : memref<256x32xf32>, memref<256x32xf32>) outs(%alloc_104 : memref<256x32xf32>) {
    ^bb0(%in: f32, %in_127: f32, %out: f32):
      %5 = arith.mulf %in, %in_127 : f32
      linalg.yield %5 : f32
    }
    %alloc_105 = memref.alloc() {alignment = 64 : i64} : memref<256x32xf32>
    linalg.generic {indexing_maps = [#map4, #map4, #map4], iterator_types = ["parallel", "parallel"]} ins(%alloc_98, %alloc_104 : memref<256x32xf32>, memref<256x32xf32>) outs(%alloc_105 : memref<256x32xf32>) {
    ^bb0(%in: f32, %in_127: f32, %out: f32):
      %5 = arith.subf %in, %in_127 : f32
      linalg.yield %5 : f32
    }
    %alloc_106 = memref.alloc() {alignment = 64 : i64} : memref<256x32xf32>
    linalg.generic {indexing_maps = [#map4, #map4, #map4], iterator_types = ["parallel", "parallel"]} ins(%alloc_103, %alloc_105 : memref<256x32xf32>, memref<256x32xf32>) outs(%alloc_106 : memref<256x32xf32>) {
    ^bb0(%in: f32, %in_127: f32, %out: f32):
      %5 = arith.mulf %in, %in_127 : f32
      linalg.yield %5 : f32
    }
    %alloc_107 = memref.alloc() {alignment = 64 : i64} : memref<2x32xf32>
    linalg.fill ins(%cst_35 : f32) outs(%alloc_107 : memref<2x32xf32>)
    linalg.contract indexing_maps = [#map12, #map1, #map2] {kiln.contraction = 5 : i64} ins(%arg0, %alloc_106 : memref<256x2xf32>, memref<256x32xf32>) outs(%alloc_107 : memref<2x32xf32>)
    %alloc_108 = memref.alloc() {alignment = 64 : i64} : memref<2x32xf32>
    linalg.generic {indexing_maps = [#map6, #map4], iterator_types = ["parallel", "parallel"]} ins(%arg8 : memref<f32>) outs(%alloc_108 : memref<2x32xf32>) {
    ^bb0(%in: f32, %out: f32):
      linalg.yield %in : f32
    }
    %alloc_109 = memref.alloc() {alignment = 64 : i64} : memref<2x32xf32>
    linalg.generic {indexing_maps = [#map4, #map4, #map4], iterator_types = ["parallel", "parallel"]} ins(%alloc_107, %alloc_108 : memref<2x32xf32>, memref<2x32xf32>) outs(%alloc_109 : memref<2x32xf32>) {
    ^bb0(%in: f32, %in_127: f32, %out: f32):
      %5 = arith.mulf %in, %in_127 : f32
      linalg.yield %5 : f32
    }
    linalg.generic {indexing_maps = [#map4, #map4, #map4], iterator_types = ["parallel", "parallel"]} ins(%arg2, %alloc_109 : memref<2x32xf32>, memref<2x32xf32>) outs(%arg10 : memref<2x32xf32>) {
    ^bb0(%in: f32, %in_127: f32, %out: f32):
      %5 = arith.subf %in, %in_127 : f32
      linalg.yield %5 : f32
    }
    %alloc_110 = memref.alloc() {alignment = 64 : i64} : memref<32xf64>
    linalg.fill ins(%cst_14 : f64) outs(%alloc_110 : memref<32xf64>)
    linalg.generic {indexing_maps = [#map4, #map3], iterator_types = ["reduction", "parallel"]} ins(%alloc_106 : memref<256x32xf32>) outs(%alloc_110 : memref<32xf64>) {
    ^bb0(%in: f32, %out: f64):
      %5 = arith.extf %in : f32 to f64
      %6 = arith.addf %out, %5 : f64
      linalg.yield %6 : f64
    }
    %alloc_111 = memref.alloc() {alignment = 64 : i64} : memref<32xf32>
    linalg.generic {indexing_maps = [#map8, #map8], iterator_types = ["parallel"]} ins(%alloc_110 : memref<32xf64>) outs(%alloc_111 : memref<32xf32>) {
    ^bb0(%in: f64, %out: f32):
      %5 = arith.truncf %in : f64 to f32
      linalg.yield %5 : f32
    }
    %alloc_112 = memref.alloc() {alignment = 64 : i64} : memref<32xf32>
    linalg.generic {indexing_maps = [#map9, #map8], iterator_types = ["parallel"]} ins(%arg8 : memref<f32>) outs(%alloc_112 : memref<32xf32>) {
    ^bb0(%in: f32, %out: f32):
      linalg.yield %in : f32
    }
    %alloc_113 = memref.alloc() {alignment = 64 : i64} : memref<32xf32>
    linalg.generic {indexing_maps = [#map8, #map8, #map8], iterator_types = ["parallel"]} ins(%alloc_111, %alloc_112 : memref<32xf32>, memref<32xf32>) outs(%alloc_113 : memref<32xf32>) {
    ^bb0(%in: f32, %in_127: f32, %out: f32):
      %5 = arith.mulf %in, %in_127 : f32
      linalg.yield %5 : f32
    }
    linalg.generic {indexing_maps = [#map8, #map8, #map8], iterator_types = ["parallel"]} ins(%arg3, %alloc_113 : memref<32xf32>, memref<32xf32>) outs(%arg11 : memref<32xf32>) {
    ^bb0(%in: f32, %in_127: f32, %out: f32):
      %5 = arith.subf %in, %in_127 : f32
      linalg.yield %5 : f32
    }
    %alloc_114 = memref.alloc() {alignment = 64 : i64} : memref<32x32xf32>
    linalg.fill ins(%cst_35 : f32) outs(%alloc_114 : memref<32x32xf32>)
    linalg.contract indexing_maps = [#map12, #map1, #map2] {kiln.contraction = 6 : i64} ins(%alloc_38, %alloc_101 : memref<256x32xf32>, memref<256x32xf32>) outs(%alloc_114 : memref<32x32xf32>)
    %alloc_115 = memref.alloc() {alignment = 64 : i64} : memref<32x32xf32>
    linalg.generic {indexing_maps = [#map6, #map4], iterator_types = ["parallel", "parallel"]} ins(%arg8 : memref<f32>) outs(%alloc_115 : memref<32x32xf32>) {
    ^bb0(%in: f32, %out: f32):
      linalg.yield %in : f32
    }
    %alloc_116 = memref.alloc() {alignment = 64 : i64} : memref<32x32xf32>
    linalg.generic {indexing_maps = [#map4, #map4, #map4], iterator_types = ["parallel", "parallel"]} ins(%alloc_114, %alloc_115 : memref<32x32xf32>, memref<32x32xf32>) outs(%alloc_116 : memref<32x32xf32>) {
    ^bb0(%in: f32, %in_127: f32, %out: f32):
      %5 = arith.mulf %in, %in_127 : f32
      linalg.yield %5 : f32
    }
    linalg.generic {indexing_maps = [#map4, #map4, #map4], iterator_types = ["parallel", "parallel"]} ins(%arg4, %alloc_116 : memref<32x32xf32>, memref<32x32xf32>) outs(%arg12 : memref<32x32xf32>) {
    ^bb0(%in: f32, %in_127: f32, %out: f32):
      %5 = arith.subf %in, %in_127 : f32
      linalg.yield %5 : f32
    }
    %alloc_117 = memref.alloc() {alignment = 64 : i64} : memref<32xf64>
    linalg.fill ins(%cst_14 : f64) outs(%alloc_117 : memref<32xf64>)
    linalg.generic {indexing_maps = [#map4, #map3], iterator_types = ["reduction", "parallel"]} ins(%alloc_101 : memref<256x32xf32>) outs(%alloc_117 : memref<32xf64>) {
    ^bb0(%in: f32, %out: f64):
      %5 = arith.extf %in : f32 to f64
      %6 = arith.addf %out, %5 : f64
      linalg.yield %6 : f64
    }
    %alloc_118 = memref.alloc() {alignment = 64 : i64} : memref<32xf32>
    linalg.generic {indexing_maps = [#map8, #map8], iterator_types = ["parallel"]} ins(%alloc_117 : memref<32xf64>) outs(%alloc_118 : memref<32xf32>) {
    ^bb0(%in: f64, %out: f32):
      %5 = arith.truncf %in : f64 to f32
      linalg.yield %5 : f32
    }
    %alloc_119 = memref.alloc() {alignment = 64 : i64} : memref<32xf32>
    linalg.generic {indexing_maps = [#map8, #map8, #map8], iterator_types = ["parallel"]} ins(%alloc_118, %alloc_112 : memref<32xf32>, memref<32xf32>) outs(%alloc_119 : memref<32xf32>) {
    ^bb0(%in: f32, %in_127: f32, %out: f32):
      %5 = arith.mulf %in, %in_127 : f32
      linalg.yield %5 : f32
    }
    linalg.generic {indexing_maps = [#map8, #map8, #map8], iterator_types = ["parallel"]} ins(%arg5, %alloc_119 : memref<32xf32>, memref<32xf32>) outs(%arg13 : memref<32xf32>) {
    ^bb0(%in: f32, %in_127: f32, %out: f32):
      %5 = arith.subf %in, %in_127 : f32
      linalg.yield %5 : f32
    }
    %alloc_120 = memref.alloc() {alignment = 64 : i64} : memref<32x2xf32>
    linalg.fill ins(%cst_35 : f32) outs(%alloc_120 : memref<32x2xf32>)
    linalg.contract indexing_maps = [#map12, #map1, #map2] {kiln.contraction = 7 : i64} ins(%alloc_42, %alloc_95 : memref<256x32xf32>, memref<256x2xf32>) outs(%alloc_120 : memref<32x2xf32>)
    %alloc_121 = memref.alloc() {alignment = 64 : i64} : memref<32x2xf32>
    linalg.generic {indexing_maps = [#map6, #map4], iterator_types = ["parallel", "parallel"]} ins(%arg8 : memref<f32>) outs(%alloc_121 : memref<32x2xf32>) {
    ^bb0(%in: f32, %out: f32):
      linalg.yield %in : f32
    }
    %alloc_122 = memref.alloc() {alignment = 64 : i64} : memref<32x2xf32>
    linalg.generic {indexing_maps = [#map4, #map4, #map4], iterator_types = ["parallel", "parallel"]} ins(%alloc_120, %alloc_121 : memref<32x2xf32>, memref<32x2xf32>) outs(%alloc_122 : memref<32x2xf32>) {
    ^bb0(%in: f32, %in_127: f32, %out: f32):
      %5 = arith.mulf %in, %in_127 : f32
      linalg.yield %5 : f32
    }
    linalg.generic {indexing_maps = [#map4, #map4, #map4], iterator_types = ["parallel", "parallel"]} ins(%arg6, %alloc_122 : memref<32x2xf32>, memref<32x2xf32>) outs(%arg14 : memref<32x2xf32>) {
    ^bb0(%in: f32, %in_127: f32, %out: f32):
      %5 = arith.subf %in, %in_127 : f32
      linalg.yield %5 : f32
    }
    %alloc_123 = memref.alloc() {alignment = 64 : i64} : memref<2xf64>
    linalg.fill ins(%cst_14 : f64) outs(%alloc_123 : memref<2xf64>)
    linalg.generic {indexing_maps = [#map4, #map3], iterator_types = ["reduction", "parallel"]} ins(%alloc_95 : memref<256x2xf32>) outs(%alloc_123 : memref<2xf64>) {
    ^bb0(%in: f32, %out: f64):
      %5 = arith.extf %in : f32 to f64
      %6 = arith.addf %out, %5 : f64
      linalg.yield %6 : f64
    }
    %alloc_124 = memref.alloc() {alignment = 64 : i64} : memref<2xf32>
    linalg.generic {indexing_maps = [#map8, #map8], iterator_types = ["parallel"]} ins(%alloc_123 : memref<2xf64>) outs(%alloc_124 : memref<2xf32>) {
    ^bb0(%in: f64, %out: f32):
      %5 = arith.truncf %in : f64 to f32
      linalg.yield %5 : f32
    }
    %alloc_125 = memref.alloc() {alignment = 64 : i64} : memref<2xf32>
    linalg.generic {indexing_maps = [#map9, #map8], iterator_types = ["parallel"]} ins(%arg8 : memref<f32>) outs(%alloc_125 : memref<2xf32>) {
    ^bb0(%in: f32, %out: f32):
      linalg.yield %in : f32
    }
    %alloc_126 = memref.alloc() {alignment = 64 : i64} : memref<2xf32>
    linalg.generic {indexing_maps = [#map8, #map8, #map8], iterator_types = ["parallel"]} ins(%alloc_124, %alloc_125 : memref<2xf32>, memref<2xf32>) outs(%alloc_126 : memref<2xf32>) {
    ^bb0(%in: f32, %in_127: f32, %out: f32):
      %5 = arith.mulf %in, %in_127 : f32
      linalg.yield %5 : f32
    }
    linalg.generic {indexing_maps = [#map8, #map8, #map8], iterator_types = ["parallel"]} ins(%arg7, %alloc_126 : memref<2xf32>, memref<2xf32>) outs(%arg15 : memref<2xf32>) {
    ^bb0(%in: f32, %in_127: f32, %out: f32):
      %5 = arith.subf %in, %in_127 : f32
      linalg.yield %5 : f32
    }
    return
  }
  func.func private @train_accuracy_impl(%arg0: memref<256x2xf32> {llvm.noalias, llvm.readonly}, %arg1: memref<256xi32> {llvm.noalias, llvm.readonly}, %arg2: memref<2x32xf32> {llvm.noalias, llvm.readonly}, %arg3: memref<32xf32> {llvm.noalias, llvm.readonly}, %arg4: memref<32x32xf32> {llvm.noalias, llvm.readonly}, %arg5: memref<32xf32> {llvm.noalias, llvm.readonly}, %arg6: memref<32x2xf32> {llvm.noalias, llvm.readonly}, %arg7: memref<2xf32> {llvm.noalias, llvm.readonly}, %arg8: memref<f32> {llvm.noalias}) {
    %cst = arith.constant 0xFF800000 : f32
    %cst_0 = arith.constant 0.000000e+00 : f64
    %cst_1 = arith.constant 6.250000e-01 : f32
    %c23_i32 = arith.constant 23 : i32
    %c127_i32 = arith.constant 127 : i32
    %c1_i32 = arith.constant 1 : i32
    %cst_2 = arith.constant 0.166666657 : f32
    %cst_3 = arith.constant 0.0416657962 : f32
    %cst_4 = arith.constant 0.00833345205 : f32
    %cst_5 = arith.constant 0.00139819994 : f32
    %cst_6 = arith.constant 1.98756912E-4 : f32
    %cst_7 = arith.constant -2.12194442E-4 : f32
    %cst_8 = arith.constant 0.693359375 : f32
    %cst_9 = arith.constant 5.000000e-01 : f32
    %cst_10 = arith.constant 1.44269502 : f32
    %cst_11 = arith.constant 8.900000e+01 : f32
    %cst_12 = arith.constant -1.040000e+02 : f32
    %cst_13 = arith.constant -0.333332807 : f32
    %cst_14 = arith.constant 0.133314416 : f32
    %cst_15 = arith.constant -0.0537397154 : f32
    %cst_16 = arith.constant 0.020639088 : f32
    %cst_17 = arith.constant -0.00570498873 : f32
    %cst_18 = arith.constant 2.000000e+00 : f32
    %cst_19 = arith.constant 1.000000e+00 : f32
    %cst_20 = arith.constant 0.000000e+00 : f32
    %alloc = memref.alloc() {alignment = 64 : i64} : memref<256x32xf32>
    linalg.fill ins(%cst_20 : f32) outs(%alloc : memref<256x32xf32>)
    linalg.contract indexing_maps = [#map, #map1, #map2] {kiln.contraction = 8 : i64} ins(%arg0, %arg2 : memref<256x2xf32>, memref<2x32xf32>) outs(%alloc : memref<256x32xf32>)
    %alloc_21 = memref.alloc() {alignment = 64 : i64} : memref<256x32xf32>
    linalg.generic {indexing_maps = [#map3, #map4], iterator_types = ["parallel", "parallel"]} ins(%arg3 : memref<32xf32>) outs(%alloc_21 : memref<256x32xf32>) {
    ^bb0(%in: f32, %out: f32):
      linalg.yield %in : f32
    }
    %alloc_22 = memref.alloc() {alignment = 64 : i64} : memref<256x32xf32>
    linalg.generic {indexing_maps = [#map4, #map4, #map4], iterator_types = ["parallel", "parallel"]} ins(%alloc, %alloc_21 : memref<256x32xf32>, memref<256x32xf32>) outs(%alloc_22 : memref<256x32xf32>) {
    ^bb0(%in: f32, %in_43: f32, %out: f32):
      %1 = arith.addf %in, %in_43 : f32
      linalg.yield %1 : f32
    }
    %alloc_23 = memref.alloc() {alignment = 64 : i64} : memref<256x32xf32>
    linalg.generic {indexing_maps = [#map4, #map4], iterator_types = ["parallel", "parallel"]} ins(%alloc_22 : memref<256x32xf32>) outs(%alloc_23 : memref<256x32xf32>) {
    ^bb0(%in: f32, %out: f32):
      %1 = math.absf %in : f32
      %2 = arith.addf %1, %1 : f32
      %3 = arith.mulf %in, %in : f32
      %4 = arith.mulf %3, %cst_17 fastmath<contract> : f32
      %5 = arith.addf %4, %cst_16 fastmath<contract> : f32
      %6 = arith.mulf %5, %3 fastmath<contract> : f32
      %7 = arith.addf %6, %cst_15 fastmath<contract> : f32
      %8 = arith.mulf %7, %3 fastmath<contract> : f32
      %9 = arith.addf %8, %cst_14 fastmath<contract> : f32
      %10 = arith.mulf %9, %3 fastmath<contract> : f32
      %11 = arith.addf %10, %cst_13 fastmath<contract> : f32
      %12 = arith.mulf %11, %3 : f32
      %13 = arith.mulf %12, %in fastmath<contract> : f32
      %14 = arith.addf %13, %in fastmath<contract> : f32
      %15 = math.copysign %14, %in : f32
      %16 = arith.maximumf %2, %cst_12 : f32
      %17 = arith.minimumf %16, %cst_11 : f32
      %18 = arith.mulf %17, %cst_10 fastmath<contract> : f32
      %19 = arith.addf %18, %cst_9 fastmath<contract> : f32
      %20 = math.floor %19 : f32
      %21 = arith.mulf %20, %cst_8 : f32
      %22 = arith.subf %17, %21 : f32
      %23 = arith.mulf %20, %cst_7 : f32
      %24 = arith.subf %22, %23 : f32
      %25 = arith.mulf %24, %cst_6 fastmath<contract> : f32
      %26 = arith.addf %25, %cst_5 fastmath<contract> : f32
      %27 = arith.mulf %26, %24 fastmath<contract> : f32
      %28 = arith.addf %27, %cst_4 fastmath<contract> : f32
      %29 = arith.mulf %28, %24 fastmath<contract> : f32
      %30 = arith.addf %29, %cst_3 fastmath<contract> : f32
      %31 = arith.mulf %30, %24 fastmath<contract> : f32
      %32 = arith.addf %31, %cst_2 fastmath<contract> : f32
      %33 = arith.mulf %32, %24 fastmath<contract> : f32
      %34 = arith.addf %33, %cst_9 fastmath<contract> : f32
      %35 = arith.mulf %24, %24 : f32
      %36 = arith.mulf %34, %35 fastmath<contract> : f32
      %37 = arith.addf %36, %24 fastmath<contract> : f32
      %38 = arith.addf %37, %cst_19 : f32
      %39 = arith.fptosi %20 : f32 to i32
      %40 = arith.shrsi %39, %c1_i32 : i32
      %41 = arith.subi %39, %40 : i32
      %42 = arith.addi %40, %c127_i32 : i32
      %43 = arith.shli %42, %c23_i32 : i32
      %44 = arith.bitcast %43 : i32 to f32
      %45 = arith.addi %41, %c127_i32 : i32
      %46 = arith.shli %45, %c23_i32 : i32
      %47 = arith.bitcast %46 : i32 to f32
      %48 = arith.mulf %38, %44 : f32
      %49 = arith.mulf %48, %47 : f32
      %50 = arith.cmpf uno, %2, %2 : f32
      %51 = arith.select %50, %2, %49 : f32
      %52 = arith.addf %51, %cst_19 : f32
      %53 = arith.divf %cst_18, %52 : f32
      %54 = arith.subf %cst_19, %53 : f32
      %55 = math.copysign %54, %in : f32
      %56 = arith.cmpf olt, %1, %cst_1 : f32
      %57 = arith.select %56, %15, %55 : f32
      %58 = arith.cmpf uno, %in, %in : f32
      %59 = arith.select %58, %in, %57 : f32
      linalg.yield %59 : f32
    }
    %alloc_24 = memref.alloc() {alignment = 64 : i64} : memref<256x32xf32>
    linalg.fill ins(%cst_20 : f32) outs(%alloc_24 : memref<256x32xf32>)
    linalg.contract indexing_maps = [#map, #map1, #map2] {kiln.contraction = 9 : i64} ins(%alloc_23, %arg4 : memref<256x32xf32>, memref<32x32xf32>) outs(%alloc_24 : memref<256x32xf32>)
    %alloc_25 = memref.alloc() {alignment = 64 : i64} : memref<256x32xf32>
    linalg.generic {indexing_maps = [#map3, #map4], iterator_types = ["parallel", "parallel"]} ins(%arg5 : memref<32xf32>) outs(%alloc_25 : memref<256x32xf32>) {
    ^bb0(%in: f32, %out: f32):
      linalg.yield %in : f32
    }
    %alloc_26 = memref.alloc() {alignment = 64 : i64} : memref<256x32xf32>
    linalg.generic {indexing_maps = [#map4, #map4, #map4], iterator_types = ["parallel", "parallel"]} ins(%alloc_24, %alloc_25 : memref<256x32xf32>, memref<256x32xf32>) outs(%alloc_26 : memref<256x32xf32>) {
    ^bb0(%in: f32, %in_43: f32, %out: f32):
      %1 = arith.addf %in, %in_43 : f32
      linalg.yield %1 : f32
    }
    %alloc_27 = memref.alloc() {alignment = 64 : i64} : memref<256x32xf32>
    linalg.generic {indexing_maps = [#map4, #map4], iterator_types = ["parallel", "parallel"]} ins(%alloc_26 : memref<256x32xf32>) outs(%alloc_27 : memref<256x32xf32>) {
    ^bb0(%in: f32, %out: f32):
      %1 = math.absf %in : f32
      %2 = arith.addf %1, %1 : f32
      %3 = arith.mulf %in, %in : f32
      %4 = arith.mulf %3, %cst_17 fastmath<contract> : f32
      %5 = arith.addf %4, %cst_16 fastmath<contract> : f32
      %6 = arith.mulf %5, %3 fastmath<contract> : f32
      %7 = arith.addf %6, %cst_15 fastmath<contract> : f32
      %8 = arith.mulf %7, %3 fastmath<contract> : f32
      %9 = arith.addf %8, %cst_14 fastmath<contract> : f32
      %10 = arith.mulf %9, %3 fastmath<contract> : f32
      %11 = arith.addf %10, %cst_13 fastmath<contract> : f32
      %12 = arith.mulf %11, %3 : f32
      %13 = arith.mulf %12, %in fastmath<contract> : f32
      %14 = arith.addf %13, %in fastmath<contract> : f32
      %15 = math.copysign %14, %in : f32
      %16 = arith.maximumf %2, %cst_12 : f32
      %17 = arith.minimumf %16, %cst_11 : f32
      %18 = arith.mulf %17, %cst_10 fastmath<contract> : f32
      %19 = arith.addf %18, %cst_9 fastmath<contract> : f32
      %20 = math.floor %19 : f32
      %21 = arith.mulf %20, %cst_8 : f32
      %22 = arith.subf %17, %21 : f32
      %23 = arith.mulf %20, %cst_7 : f32
      %24 = arith.subf %22, %23 : f32
      %25 = arith.mulf %24, %cst_6 fastmath<contract> : f32
      %26 = arith.addf %25, %cst_5 fastmath<contract> : f32
      %27 = arith.mulf %26, %24 fastmath<contract> : f32
      %28 = arith.addf %27, %cst_4 fastmath<contract> : f32
      %29 = arith.mulf %28, %24 fastmath<contract> : f32
      %30 = arith.addf %29, %cst_3 fastmath<contract> : f32
      %31 = arith.mulf %30, %24 fastmath<contract> : f32
      %32 = arith.addf %31, %cst_2 fastmath<contract> : f32
      %33 = arith.mulf %32, %24 fastmath<contract> : f32
      %34 = arith.addf %33, %cst_9 fastmath<contract> : f32
      %35 = arith.mulf %24, %24 : f32
      %36 = arith.mulf %34, %35 fastmath<contract> : f32
      %37 = arith.addf %36, %24 fastmath<contract> : f32
      %38 = arith.addf %37, %cst_19 : f32
      %39 = arith.fptosi %20 : f32 to i32
      %40 = arith.shrsi %39, %c1_i32 : i32
      %41 = arith.subi %39, %40 : i32
      %42 = arith.addi %40, %c127_i32 : i32
      %43 = arith.shli %42, %c23_i32 : i32
      %44 = arith.bitcast %43 : i32 to f32
      %45 = arith.addi %41, %c127_i32 : i32
      %46 = arith.shli %45, %c23_i32 : i32
      %47 = arith.bitcast %46 : i32 to f32
      %48 = arith.mulf %38, %44 : f32
      %49 = arith.mulf %48, %47 : f32
      %50 = arith.cmpf uno, %2, %2 : f32
      %51 = arith.select %50, %2, %49 : f32
      %52 = arith.addf %51, %cst_19 : f32
      %53 = arith.divf %cst_18, %52 : f32
      %54 = arith.subf %cst_19, %53 : f32
      %55 = math.copysign %54, %in : f32
      %56 = arith.cmpf olt, %1, %cst_1 : f32
      %57 = arith.select %56, %15, %55 : f32
      %58 = arith.cmpf uno, %in, %in : f32
      %59 = arith.select %58, %in, %57 : f32
      linalg.yield %59 : f32
    }
    %alloc_28 = memref.alloc() {alignment = 64 : i64} : memref<256x2xf32>
    linalg.fill ins(%cst_20 : f32) outs(%alloc_28 : memref<256x2xf32>)
    linalg.contract indexing_maps = [#map, #map1, #map2] {kiln.contraction = 10 : i64} ins(%alloc_27, %arg6 : memref<256x32xf32>, memref<32x2xf32>) outs(%alloc_28 : memref<256x2xf32>)
    %alloc_29 = memref.alloc() {alignment = 64 : i64} : memref<256x2xf32>
    linalg.generic {indexing_maps = [#map3, #map4], iterator_types = ["parallel", "parallel"]} ins(%arg7 : memref<2xf32>) outs(%alloc_29 : memref<256x2xf32>) {
    ^bb0(%in: f32, %out: f32):
      linalg.yield %in : f32
    }
    %alloc_30 = memref.alloc() {alignment = 64 : i64} : memref<256x2xf32>
    linalg.generic {indexing_maps = [#map4, #map4, #map4], iterator_types = ["parallel", "parallel"]} ins(%alloc_28, %alloc_29 : memref<256x2xf32>, memref<256x2xf32>) outs(%alloc_30 : memref<256x2xf32>) {
    ^bb0(%in: f32, %in_43: f32, %out: f32):
      %1 = arith.addf %in, %in_43 : f32
      linalg.yield %1 : f32
    }
    %alloc_31 = memref.alloc() {alignment = 64 : i64} : memref<256x2xi32>
    linalg.generic {indexing_maps = [#map4], iterator_types = ["parallel", "parallel"]} outs(%alloc_31 : memref<256x2xi32>) {
    ^bb0(%out: i32):
      %1 = linalg.index 1 : index
      %2 = arith.index_cast %1 : index to i64
      %3 = arith.trunci %2 : i64 to i32
      linalg.yield %3 : i32
    }
    %alloc_32 = memref.alloc() {alignment = 64 : i64} : memref<256x2xi32>
    linalg.generic {indexing_maps = [#map5, #map4], iterator_types = ["parallel", "parallel"]} ins(%arg1 : memref<256xi32>) outs(%alloc_32 : memref<256x2xi32>) {
    ^bb0(%in: i32, %out: i32):
      linalg.yield %in : i32
    }
    %alloc_33 = memref.alloc() {alignment = 64 : i64} : memref<256x2xi1>
    linalg.generic {indexing_maps = [#map4, #map4, #map4], iterator_types = ["parallel", "parallel"]} ins(%alloc_32, %alloc_31 : memref<256x2xi32>, memref<256x2xi32>) outs(%alloc_33 : memref<256x2xi1>) {
    ^bb0(%in: i32, %in_43: i32, %out: i1):
      %1 = arith.cmpi eq, %in, %in_43 : i32
      linalg.yield %1 : i1
    }
    %alloc_34 = memref.alloc() {alignment = 64 : i64} : memref<256x2xf32>
    linalg.generic {indexing_maps = [#map4, #map4], iterator_types = ["parallel", "parallel"]} ins(%alloc_33 : memref<256x2xi1>) outs(%alloc_34 : memref<256x2xf32>) {
    ^bb0(%in: i1, %out: f32):
      %1 = arith.uitofp %in : i1 to f32
      linalg.yield %1 : f32
    }
    %alloc_35 = memref.alloc() {alignment = 64 : i64} : memref<256x2xf32>
    linalg.generic {indexing_maps = [#map4, #map4, #map4], iterator_types = ["parallel", "parallel"]} ins(%alloc_30, %alloc_34 : memref<256x2xf32>, memref<256x2xf32>) outs(%alloc_35 : memref<256x2xf32>) {
    ^bb0(%in: f32, %in_43: f32, %out: f32):
      %1 = arith.mulf %in, %in_43 : f32
      linalg.yield %1 : f32
    }
    %alloc_36 = memref.alloc() {alignment = 64 : i64} : memref<256xf64>
    linalg.fill ins(%cst_0 : f64) outs(%alloc_36 : memref<256xf64>)
    linalg.generic {indexing_maps = [#map4, #map5], iterator_types = ["parallel", "reduction"]} ins(%alloc_35 : memref<256x2xf32>) outs(%alloc_36 : memref<256xf64>) {
    ^bb0(%in: f32, %out: f64):
      %1 = arith.extf %in : f32 to f64
      %2 = arith.addf %out, %1 : f64
      linalg.yield %2 : f64
    }
    %alloc_37 = memref.alloc() {alignment = 64 : i64} : memref<256xf32>
    linalg.generic {indexing_maps = [#map8, #map8], iterator_types = ["parallel"]} ins(%alloc_36 : memref<256xf64>) outs(%alloc_37 : memref<256xf32>) {
    ^bb0(%in: f64, %out: f32):
      %1 = arith.truncf %in : f64 to f32
      linalg.yield %1 : f32
    }
    %alloc_38 = memref.alloc() {alignment = 64 : i64} : memref<256xf32>
    linalg.fill ins(%cst : f32) outs(%alloc_38 : memref<256xf32>)
    linalg.generic {indexing_maps = [#map4, #map5], iterator_types = ["parallel", "reduction"]} ins(%alloc_30 : memref<256x2xf32>) outs(%alloc_38 : memref<256xf32>) {
    ^bb0(%in: f32, %out: f32):
      %1 = arith.maximumf %out, %in : f32
      linalg.yield %1 : f32
    }
    %alloc_39 = memref.alloc() {alignment = 64 : i64} : memref<256xi1>
    linalg.generic {indexing_maps = [#map8, #map8, #map8], iterator_types = ["parallel"]} ins(%alloc_37, %alloc_38 : memref<256xf32>, memref<256xf32>) outs(%alloc_39 : memref<256xi1>) {
    ^bb0(%in: f32, %in_43: f32, %out: i1):
      %1 = arith.cmpf oge, %in, %in_43 : f32
      linalg.yield %1 : i1
    }
    %alloc_40 = memref.alloc() {alignment = 64 : i64} : memref<256xf32>
    linalg.generic {indexing_maps = [#map8, #map8], iterator_types = ["parallel"]} ins(%alloc_39 : memref<256xi1>) outs(%alloc_40 : memref<256xf32>) {
    ^bb0(%in: i1, %out: f32):
      %1 = arith.uitofp %in : i1 to f32
      linalg.yield %1 : f32
    }
    %alloc_41 = memref.alloc() {alignment = 64 : i64} : memref<f64>
    linalg.fill ins(%cst_0 : f64) outs(%alloc_41 : memref<f64>)
    linalg.generic {indexing_maps = [#map8, #map9], iterator_types = ["reduction"]} ins(%alloc_40 : memref<256xf32>) outs(%alloc_41 : memref<f64>) {
    ^bb0(%in: f32, %out: f64):
      %1 = arith.extf %in : f32 to f64
      %2 = arith.addf %out, %1 : f64
      linalg.yield %2 : f64
    }
    %alloc_42 = memref.alloc() {alignment = 64 : i64} : memref<f32>
    linalg.generic {indexing_maps = [#map10, #map10], iterator_types = []} ins(%alloc_41 : memref<f64>) outs(%alloc_42 : memref<f32>) {
    ^bb0(%in: f64, %out: f32):
      %1 = arith.truncf %in : f64 to f32
      linalg.yield %1 : f32
    }
    %0 = memref.get_global @__constant_xf32 : memref<f32>
    linalg.generic {indexing_maps = [#map10, #map10, #map10], iterator_types = []} ins(%alloc_42, %0 : memref<f32>, memref<f32>) outs(%arg8 : memref<f32>) {
    ^bb0(%in: f32, %in_43: f32, %out: f32):
      %1 = arith.mulf %in, %in_43 : f32
      linalg.yield %1 : f32
    }
    return
  }
}
