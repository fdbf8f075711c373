# Builds and runs an outside consumer of tessera: cmake -DMODE=find_package|add_subdirectory -DSOURCE_DIR=... -DWORK_DIR=... -P
function(run_step)
  execute_process(COMMAND ${ARGV} RESULT_VARIABLE result OUTPUT_VARIABLE output ERROR_VARIABLE output)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "step failed (${result}): ${ARGV}\n${output}")
  endif()
  message("${output}")
endfunction()

file(REMOVE_RECURSE ${WORK_DIR})
set(consumer_dir ${SOURCE_DIR}/tests/package/${MODE})
if(MODE STREQUAL "find_package")
  run_step(${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}/tessera -DCMAKE_BUILD_TYPE=Release
           -DTESSERA_BUILD_TESTS=OFF -DTESSERA_BUILD_EXAMPLES=OFF -DTESSERA_BUILD_BENCHMARKS=OFF -DTESSERA_INSTALL=ON)
  run_step(${CMAKE_COMMAND} --install ${WORK_DIR}/tessera --prefix ${WORK_DIR}/prefix)
  run_step(${CMAKE_COMMAND} -S ${consumer_dir} -B ${WORK_DIR}/consumer -DCMAKE_BUILD_TYPE=Release
           -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix)
elseif(MODE STREQUAL "add_subdirectory")
  run_step(${CMAKE_COMMAND} -S ${consumer_dir} -B ${WORK_DIR}/consumer -DCMAKE_BUILD_TYPE=Release
           -DTESSERA_SOURCE_DIR=${SOURCE_DIR})
else()
  message(FATAL_ERROR "MODE must be find_package or add_subdirectory")
endif()
run_step(${CMAKE_COMMAND} --build ${WORK_DIR}/consumer)
run_step(${WORK_DIR}/consumer/readme_example)
