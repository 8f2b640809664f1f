# calibrate_refuses_out(FLAG CSV FIELD): `zeroplan calibrate --gpu H200-141GB
# FLAG CSV --out WORK/fitted.json` on rates no GPU has (the host emulator's)
# exits 2 with one line naming the flag, the file and FIELD, and writes no
# file. Included by the emulated bench tests (ZEROPLAN and WORK set).
function(calibrate_refuses_out flag csv field)
  execute_process(COMMAND ${ZEROPLAN} calibrate --gpu H200-141GB ${flag} ${csv} --out ${WORK}/fitted.json
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  string(STRIP "${err}" err)
  get_filename_component(name ${csv} NAME)
  if(NOT rc EQUAL 2 OR NOT err MATCHES "^[^\n]*${flag} .*${name}: ${field} .* nothing written$" OR EXISTS ${WORK}/fitted.json)
    message(FATAL_ERROR "calibrate ${flag} --out on the emulator's rates exited ${rc} (${err}); expected 2 and no file")
  endif()
endfunction()
