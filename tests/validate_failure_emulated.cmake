# A layout that runs out of device memory is validate's finding, not its
# end: zeroplan_emulated (the CUDA backend on tests/simt's emulator, its
# device cut to 512 MiB by ZP_SIMT_DEVICE_BYTES) validates a matrix whose
# first case needs gigabytes and whose second fits. The first is reported
# failed with the device's message beside the predicted peak, the second
# still runs, with the device's figures of its own, and validate exits 1.
file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK})
file(WRITE ${WORK}/matrix.json "{\"cases\": [
  {\"model\": \"gpt2-124m\", \"gpu\": \"H100-80GB\", \"gpus\": 1, \"seq\": 32, \"layout\": \"zero=0,mb=1\"},
  {\"model\": \"${MODEL}\", \"gpu\": \"H100-80GB\", \"gpus\": 2, \"seq\": 32, \"layout\": \"zero=1,mb=2\"}]}")
execute_process(COMMAND ${CMAKE_COMMAND} -E env ZP_SIMT_DEVICE_BYTES=536870912
                        ${EMULATED} validate --device cuda --matrix ${WORK}/matrix.json --steps 1 --warmup 0 --out ${WORK}/out
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 120)
if(NOT rc EQUAL 1)
  message(FATAL_ERROR "validate exited ${rc}, expected 1 (a case failed): ${out} ${err}")
endif()
file(READ ${WORK}/out/validate.json doc)
string(JSON failed GET "${doc}" cases 0 failed)
string(JSON why GET "${doc}" cases 0 why_not)
string(JSON predicted GET "${doc}" cases 0 predicted_peak_bytes)
string(JSON second_ran GET "${doc}" cases 1 run)
# The device's caching allocator starts each case afresh: case 1's reserved
# peak is its own tens of MiB, not the half GiB case 0 reached.
string(JSON second_reserved GET "${doc}" cases 1 gpu_memory reserved_peak_bytes)
# The device's own view: on the emulator no context or library holds memory,
# so the most held is the segments' peak, and the overheads are not compared.
string(JSON view_peak GET "${doc}" cases 1 device_view measured_peak_bytes)
string(JSON view_compared GET "${doc}" cases 1 device_view compared)
string(JSON view_overheads GET "${doc}" cases 1 device_view runtime_overheads measured_bytes)
if(NOT view_peak EQUAL second_reserved OR view_compared OR NOT view_overheads EQUAL 0)
  message(FATAL_ERROR "device view: ${view_peak} bytes at most, compared ${view_compared}, overheads ${view_overheads}; "
                      "reserved peak ${second_reserved}")
endif()
if(NOT failed OR NOT why MATCHES "^the run failed: out of memory on .* GiB for [a-z_]+ with .* GiB held$"
   OR predicted LESS 1000000000 OR NOT second_ran OR second_reserved GREATER 268435456)
  message(FATAL_ERROR "case 0 failed ${failed} (${why}), predicted ${predicted} bytes; case 1 ran ${second_ran}, "
                      "reserved ${second_reserved} bytes at its peak")
endif()
file(READ ${WORK}/out/report.md report)
if(NOT report MATCHES "\\| 0 \\| [^|]+ \\| failed \\| [0-9.]+ MiB \\|")
  message(FATAL_ERROR "the report does not show case 0 failed: ${report}")
endif()
message(STATUS "case 0: ${why}; case 1 ran, ${second_reserved} bytes reserved at its peak")
