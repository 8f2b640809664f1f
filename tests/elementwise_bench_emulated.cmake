# bench/gpu_elementwise_bench on the host emulator (tests/simt) at sizes
# divided by 4096: it runs to the end, the copy comes first (the ceiling the
# rows are measured against) and every kernel gives a row with positive
# bytes and time. The emulator's rates are no GPU's; only the shape of the
# output is checked, and that `zeroplan calibrate --elementwise` reads all of
# it, reports the emulator's rates as no GPU's and writes nothing from them.
file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK})
execute_process(COMMAND ${BENCH} 1 4096 RESULT_VARIABLE rc OUTPUT_VARIABLE csv ERROR_VARIABLE err TIMEOUT 100)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "gpu_elementwise_bench (emulated) exited ${rc}: ${err}")
endif()
string(REGEX REPLACE "\n$" "" csv "${csv}")
string(REPLACE "\n" ";" rows "${csv}")
list(LENGTH rows count)
list(GET rows 0 header)
list(GET rows 1 first)
if(NOT header STREQUAL "kernel,dtype,elements,bytes,ms,GBps,of_copy" OR NOT first MATCHES "^copy,bytes,.*,1\\.000$")
  message(FATAL_ERROR "expected the header, then the copy at 1.000 of itself; got:\n${csv}")
endif()
# The copy, 9 kernels in bf16 and in fp32, 4 over the optimizer's buffer.
if(NOT count EQUAL 24)
  message(FATAL_ERROR "expected a header and 23 rows, got ${count} lines:\n${csv}")
endif()
foreach(row ${rows})
  if(row STREQUAL header)
    continue()
  endif()
  if(NOT row MATCHES "^[a-z0-9_]+,[a-z0-9+]+,[1-9][0-9]*,[1-9][0-9]*,[0-9.]+,[0-9.]+,[0-9.]+$" OR row MATCHES ",0\\.0000,")
    message(FATAL_ERROR "a row without positive sizes and a time: ${row}")
  endif()
endforeach()
file(WRITE ${WORK}/elementwise.csv "${csv}\n")
execute_process(COMMAND ${ZEROPLAN} calibrate --gpu H200-141GB --elementwise ${WORK}/elementwise.csv
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT out MATCHES "fitted to 16 one-launch kernels" OR NOT out MATCHES "\\(6 more checked\\)"
   OR NOT out MATCHES "not a GPU's value: hbm_fraction")
  message(FATAL_ERROR "calibrate --elementwise exited ${rc}: ${out} ${err}")
endif()
include(${CMAKE_CURRENT_LIST_DIR}/calibrate_refuses_out.cmake)
calibrate_refuses_out(--elementwise ${WORK}/elementwise.csv hbm_fraction)
